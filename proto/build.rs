//! Compiles `keel/v1/*.proto` with a pure-Rust compiler, so no system `protoc` is needed.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["keel/v1/chunkserver.proto", "keel/v1/master.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    // Reflection serves this descriptor set, so grpcurl needs no .proto files.
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("keel_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
