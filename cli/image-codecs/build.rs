//! Compiles `src/shim.c` against the system's libavif, libwebp and libjpeg
//! headers and links those libraries (README: system prerequisites). Flags come
//! from pkg-config when it knows the libraries, else the plain library names.

use std::process::Command;

const LIBRARIES: [(&str, &str); 3] = [
    ("libavif", "avif"),
    ("libwebp", "webp"),
    ("libjpeg", "jpeg"),
];

fn pkg_config(args: &[&str]) -> Option<String> {
    let output = Command::new("pkg-config").args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn main() {
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let mut build = cc::Build::new();
    build.file("src/shim.c").warnings(true);
    for (module, name) in LIBRARIES {
        let Some(cflags) = pkg_config(&["--cflags", module]) else {
            println!("cargo:rustc-link-lib={name}");
            continue;
        };
        for flag in cflags.split_whitespace() {
            build.flag(flag);
        }
        for flag in pkg_config(&["--libs", module])
            .unwrap_or_default()
            .split_whitespace()
        {
            if let Some(dir) = flag.strip_prefix("-L") {
                println!("cargo:rustc-link-search=native={dir}");
            } else if let Some(lib) = flag.strip_prefix("-l") {
                println!("cargo:rustc-link-lib={lib}");
            }
        }
    }
    if let Err(err) = build.try_compile("cachefront_image_shim") {
        // The usual cause: the -dev packages are not installed.
        println!(
            "cargo:warning=cannot compile the image codec shim ({err}); install the system \
             libraries: apt-get install libavif-dev libwebp-dev libjpeg-dev pkg-config"
        );
        std::process::exit(1);
    }
}
