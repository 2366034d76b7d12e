//! Compiles `keel/v1/*.proto`, and the subset of etcd's v3 API under
//! `etcd/` (client side only), with a pure-Rust compiler, so no system
//! `protoc` is needed.

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
        // Chunk bytes as `bytes::Bytes`: a received frame is a view into the
        // decode buffer rather than a copy, and a frame read from disk is
        // handed to the encoder without another allocation.
        .bytes(".keel.v1.WriteChunkRequest.data")
        .bytes(".keel.v1.ReadChunkResponse.data")
        // Encode and decode buffers sized for chunk streams (src/codec.rs).
        .codec_path("crate::codec::FrameCodec")
        .compile_fds(fds)?;
    compile_etcd()
}

/// etcd's KV and Lease services, as a client: the master's leader election.
/// Not in the reflection descriptor set, which describes what Keel serves.
fn compile_etcd() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["etcd/etcdserverpb/rpc.proto", "etcd/mvccpb/kv.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
