//! Compiles `proto/alto/agent/v1/link.proto` with protox (a pure-Rust protobuf compiler, so
//! no `protoc` is needed on the build machine) and generates the tonic client and server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/alto/agent/v1/link.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
