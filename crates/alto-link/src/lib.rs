//! The agent link's wire protocol and the TLS material it runs on.
//!
//! * [`pb`]: the protobuf messages and the tonic client and server of
//!   `proto/alto/agent/v1/link.proto` (one long-lived bidirectional stream per agent; the
//!   file documents the conversation). Generated at build time by protox, so building needs
//!   no `protoc`.
//! * [`tls`]: a development certificate authority created on the server's first start (so TLS
//!   works out of the box), and loading of supplied certificates for production.
//! * [`convert`]: the messages to and from the job contract (`alto_api_types`), in one place
//!   for both ends, so the link carries exactly what the REST endpoints carry.
//!
//! **Must never:** contain what the messages *mean* (executing jobs is `alto-agent`'s,
//! dispatching them `alto-server`'s); talk to a database; open a network connection itself;
//! read the clock except to set certificate validity (`tls`); write a private key with
//! permissions other than 0600.

pub mod convert;
pub mod tls;

/// Generated protobuf messages and gRPC stubs (`alto.agent.v1`).
#[allow(unreachable_pub, clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("alto.agent.v1");
}

pub use tonic;

/// The metadata key carrying the host credential (`Bearer alto_h_…`).
pub const AUTHORIZATION: &str = "authorization";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_encode_and_decode() {
        use prost::Message as _;
        let m = pb::AgentMessage {
            body: Some(pb::agent_message::Body::Request(pb::Request {
                id: 7,
                call: Some(pb::request::Call::Files(pb::FileResults {
                    job_id: "j".into(),
                    results: vec![pb::FileResult {
                        seq: 3,
                        outcome: pb::Outcome::Stubbed as i32,
                        sha256: Some("ab".into()),
                        object_key: None,
                        stored_size: Some(10),
                        error: None,
                    }],
                })),
            })),
        };
        let back = pb::AgentMessage::decode(m.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, m);
    }
}
