//! HL7 v2 over MLLP: listener, mapping, TLS and an independent python client.

mod mllp_listener;
mod mllp_mapping;
mod mllp_python_client;
mod mllp_tls;
