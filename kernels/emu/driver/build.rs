//! Names the library `libcuda.so.1`, the driver's own soname: once a test has opened it by its
//! path, cudarc's and NVRTC's requests for the driver by name find it already loaded.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcuda.so.1");
}
