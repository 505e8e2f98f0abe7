/* The C side of cachefront-image-codecs' bindings to the system's libavif,
 * libwebp and libjpeg(-turbo) (Debian: libavif-dev, libwebp-dev,
 * libjpeg62-turbo-dev). Compiled against the installed headers, so no struct
 * layout is mirrored in Rust: Rust sees only these functions, which take
 * plain buffers and return a malloc'ed result the caller frees with
 * cf_free(). Each returns 0 on success, otherwise an error code (the AVIF
 * ones: libavif's avifResult, readable through cf_avif_error). */

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avif/avif.h>
#include <jpeglib.h>
#include <webp/decode.h>
#include <webp/encode.h>

void cf_free(void *ptr) { free(ptr); }

static int copy_out(const uint8_t *data, size_t size, uint8_t **out, size_t *out_len) {
  uint8_t *copy = malloc(size > 0 ? size : 1);
  if (copy == NULL) return -1;
  memcpy(copy, data, size);
  *out = copy;
  *out_len = size;
  return 0;
}

/* ---- AVIF ---------------------------------------------------------------- */

const char *cf_avif_error(int code) { return avifResultToString((avifResult)code); }

void cf_avif_versions(char out[256]) { avifCodecVersions(out); }

/* 8-bit RGB (channels 3) or RGBA (channels 4), tightly packed. One quantizer
 * (0 best – 63 worst) for colour and alpha, 4:2:0 or 4:4:4, one thread. */
int cf_avif_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int channels,
                   int quantizer, int speed, int yuv444, uint8_t **out, size_t *out_len) {
  avifImage *image = avifImageCreate(width, height, 8,
                                     yuv444 ? AVIF_PIXEL_FORMAT_YUV444 : AVIF_PIXEL_FORMAT_YUV420);
  if (image == NULL) return AVIF_RESULT_UNKNOWN_ERROR;
  avifRGBImage rgb;
  avifRGBImageSetDefaults(&rgb, image);
  rgb.depth = 8;
  rgb.format = channels == 4 ? AVIF_RGB_FORMAT_RGBA : AVIF_RGB_FORMAT_RGB;
  rgb.pixels = (uint8_t *)pixels; /* read only: RGB → YUV */
  rgb.rowBytes = width * (uint32_t)channels;
  avifResult result = avifImageRGBToYUV(image, &rgb);
  if (result != AVIF_RESULT_OK) {
    avifImageDestroy(image);
    return result;
  }
  avifEncoder *encoder = avifEncoderCreate();
  if (encoder == NULL) {
    avifImageDestroy(image);
    return AVIF_RESULT_UNKNOWN_ERROR;
  }
  encoder->maxThreads = 1;
  encoder->speed = speed;
  encoder->minQuantizer = quantizer;
  encoder->maxQuantizer = quantizer;
  encoder->minQuantizerAlpha = quantizer;
  encoder->maxQuantizerAlpha = quantizer;
  avifRWData output = AVIF_DATA_EMPTY;
  result = avifEncoderWrite(encoder, image, &output);
  avifEncoderDestroy(encoder);
  avifImageDestroy(image);
  if (result == AVIF_RESULT_OK && copy_out(output.data, output.size, out, out_len) != 0) {
    result = AVIF_RESULT_OUT_OF_MEMORY;
  }
  avifRWDataFree(&output);
  return result;
}

/* To RGBA8 (tests and measurements: how close a variant is to its source). */
int cf_avif_decode_rgba(const uint8_t *data, size_t size, uint8_t **out, uint32_t *width,
                        uint32_t *height) {
  avifDecoder *decoder = avifDecoderCreate();
  if (decoder == NULL) return AVIF_RESULT_UNKNOWN_ERROR;
  avifImage *image = avifImageCreateEmpty();
  if (image == NULL) {
    avifDecoderDestroy(decoder);
    return AVIF_RESULT_UNKNOWN_ERROR;
  }
  avifResult result = avifDecoderReadMemory(decoder, image, data, size);
  if (result == AVIF_RESULT_OK) {
    avifRGBImage rgb;
    avifRGBImageSetDefaults(&rgb, image);
    rgb.depth = 8;
    rgb.format = AVIF_RGB_FORMAT_RGBA;
    avifRGBImageAllocatePixels(&rgb);
    result = avifImageYUVToRGB(image, &rgb);
    if (result == AVIF_RESULT_OK) {
      size_t row = (size_t)image->width * 4;
      uint8_t *pixels = malloc(row * image->height + 1);
      if (pixels == NULL) {
        result = AVIF_RESULT_OUT_OF_MEMORY;
      } else {
        for (uint32_t y = 0; y < image->height; y++) {
          memcpy(pixels + row * y, rgb.pixels + (size_t)rgb.rowBytes * y, row);
        }
        *out = pixels;
        *width = image->width;
        *height = image->height;
      }
    }
    avifRGBImageFreePixels(&rgb);
  }
  avifImageDestroy(image);
  avifDecoderDestroy(decoder);
  return result;
}

/* ---- WebP ---------------------------------------------------------------- */

int cf_webp_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int channels,
                   float quality, int lossless, uint8_t **out, size_t *out_len) {
  uint8_t *encoded = NULL;
  int stride = (int)width * channels;
  size_t size;
  if (lossless) {
    size = channels == 4 ? WebPEncodeLosslessRGBA(pixels, (int)width, (int)height, stride, &encoded)
                         : WebPEncodeLosslessRGB(pixels, (int)width, (int)height, stride, &encoded);
  } else {
    size = channels == 4 ? WebPEncodeRGBA(pixels, (int)width, (int)height, stride, quality, &encoded)
                         : WebPEncodeRGB(pixels, (int)width, (int)height, stride, quality, &encoded);
  }
  if (size == 0 || encoded == NULL) {
    WebPFree(encoded);
    return 1;
  }
  int status = copy_out(encoded, size, out, out_len);
  WebPFree(encoded);
  return status;
}

int cf_webp_decode_rgba(const uint8_t *data, size_t size, uint8_t **out, uint32_t *width,
                        uint32_t *height) {
  int w = 0, h = 0;
  uint8_t *decoded = WebPDecodeRGBA(data, size, &w, &h);
  if (decoded == NULL) return 1;
  size_t decoded_size = 0;
  int status = copy_out(decoded, (size_t)w * (size_t)h * 4, out, &decoded_size);
  WebPFree(decoded);
  *width = (uint32_t)w;
  *height = (uint32_t)h;
  return status;
}

/* ---- JPEG: lossless re-encoding (what jpegtran -optimize -progressive does) */

struct cf_jpeg_error {
  struct jpeg_error_mgr mgr;
  jmp_buf jump;
};

static void cf_jpeg_error_exit(j_common_ptr info) {
  struct cf_jpeg_error *error = (struct cf_jpeg_error *)info->err;
  longjmp(error->jump, 1);
}

static void cf_jpeg_quiet(j_common_ptr info, int level) {
  /* Warnings (corrupt data) are counted, never printed. */
  if (level < 0) info->err->num_warnings++;
}

/* Orientation from an APP1 Exif payload, 0 when absent or unreadable. */
static int exif_orientation(const uint8_t *d, unsigned len) {
  if (len < 14 || memcmp(d, "Exif\0\0", 6) != 0) return 0;
  const uint8_t *t = d + 6;
  unsigned n = len - 6;
  int le;
  if (t[0] == 'I' && t[1] == 'I') le = 1;
  else if (t[0] == 'M' && t[1] == 'M') le = 0;
  else return 0;
#define U16(p) (le ? (unsigned)((p)[0] | (p)[1] << 8) : (unsigned)((p)[0] << 8 | (p)[1]))
#define U32(p) (le ? ((uint32_t)(p)[0] | (uint32_t)(p)[1] << 8 | (uint32_t)(p)[2] << 16 | (uint32_t)(p)[3] << 24) \
                   : ((uint32_t)(p)[0] << 24 | (uint32_t)(p)[1] << 16 | (uint32_t)(p)[2] << 8 | (uint32_t)(p)[3]))
  uint32_t ifd = U32(t + 4);
  if (ifd > n || n - ifd < 2) return 0;
  unsigned count = U16(t + ifd);
  for (unsigned i = 0; i < count; i++) {
    uint32_t entry = ifd + 2 + i * 12;
    if (entry > n || n - entry < 12) return 0;
    if (U16(t + entry) == 0x0112) return (int)U16(t + entry + 8);
  }
  return 0;
#undef U16
#undef U32
}

/* The same DCT coefficients with optimal Huffman tables, progressive scans,
 * and only the metadata that changes how the image looks: ICC profiles
 * (APP2) and an Exif block (APP1) whose orientation is not the default.
 * Comments, XMP, IPTC and the rest are dropped. Returns 2 when the decoder
 * warned (damaged data): the caller keeps the original then. */
int cf_jpeg_optimise(const uint8_t *data, size_t size, uint8_t **out, size_t *out_len) {
  struct jpeg_decompress_struct src;
  struct jpeg_compress_struct dst;
  struct cf_jpeg_error src_error, dst_error;
  unsigned char *buffer = NULL;
  unsigned long buffer_size = 0;
  volatile int dst_created = 0;

  src.err = jpeg_std_error(&src_error.mgr);
  src_error.mgr.error_exit = cf_jpeg_error_exit;
  src_error.mgr.emit_message = cf_jpeg_quiet;
  dst.err = jpeg_std_error(&dst_error.mgr);
  dst_error.mgr.error_exit = cf_jpeg_error_exit;
  dst_error.mgr.emit_message = cf_jpeg_quiet;
  if (setjmp(src_error.jump) || setjmp(dst_error.jump)) {
    /* The memory destination's buffer is not freed here: libjpeg-turbo may
     * already have replaced (and freed) the one `buffer` names. Only a write
     * error after a successful read gets here with one allocated. */
    if (dst_created) jpeg_destroy_compress(&dst);
    jpeg_destroy_decompress(&src);
    return 1;
  }
  jpeg_create_decompress(&src);
  jpeg_mem_src(&src, data, (unsigned long)size);
  jpeg_save_markers(&src, JPEG_APP0 + 1, 0xFFFF);
  jpeg_save_markers(&src, JPEG_APP0 + 2, 0xFFFF);
  if (jpeg_read_header(&src, TRUE) != JPEG_HEADER_OK) {
    jpeg_destroy_decompress(&src);
    return 1;
  }
  jvirt_barray_ptr *coefficients = jpeg_read_coefficients(&src);
  if (src_error.mgr.num_warnings > 0) {
    jpeg_destroy_decompress(&src);
    return 2;
  }
  jpeg_create_compress(&dst);
  dst_created = 1;
  jpeg_copy_critical_parameters(&src, &dst);
  dst.optimize_coding = TRUE;
  jpeg_simple_progression(&dst);
  jpeg_mem_dest(&dst, &buffer, &buffer_size);
  jpeg_write_coefficients(&dst, coefficients);
  for (jpeg_saved_marker_ptr m = src.marker_list; m != NULL; m = m->next) {
    int keep = m->marker == JPEG_APP0 + 2
               || (m->marker == JPEG_APP0 + 1 && exif_orientation(m->data, m->data_length) > 1);
    if (keep) jpeg_write_marker(&dst, m->marker, m->data, m->data_length);
  }
  jpeg_finish_compress(&dst);
  jpeg_destroy_compress(&dst);
  dst_created = 0;
  jpeg_finish_decompress(&src);
  jpeg_destroy_decompress(&src);
  *out = buffer; /* malloc'ed by libjpeg-turbo's memory destination: cf_free */
  *out_len = buffer_size;
  return 0;
}
