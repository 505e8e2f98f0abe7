//! The encoders, from the `cachefront-image-codecs` crate (built optimised
//! even in dev and test builds; see its docs for why it is a crate).

pub use cachefront_image_codecs::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_are_never_wider_than_the_image_and_include_its_own() {
        assert_eq!(
            variant_widths(&[400, 800, 1200], 1000),
            vec![400, 800, 1000]
        );
        assert_eq!(variant_widths(&[400, 800], 400), vec![400]);
        assert_eq!(variant_widths(&[400, 800], 200), vec![200]);
        assert_eq!(variant_widths(&[], 300), vec![300]);
    }

    #[test]
    fn kinds_by_extension() {
        assert_eq!(RasterKind::of_path("/a/B.PNG"), Some(RasterKind::Png));
        assert_eq!(RasterKind::of_path("/a/b.jpeg"), Some(RasterKind::Jpeg));
        assert_eq!(RasterKind::of_path("/a/b.svg"), None);
        assert_eq!(RasterKind::of_path("/a/png"), None);
    }
}
