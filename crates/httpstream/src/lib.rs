//! `httpstream`: the streaming protocols behind `kubectl port-forward`, as the
//! kubelet speaks them (`k8s.io/apimachinery/pkg/util/httpstream`,
//! `kubelet/pkg/cri/streaming/portforward`).
//!
//! - [`spdy`]: SPDY/3.1 frames, zlib header blocks and a server session;
//! - [`tunnel`]: SPDY carried in WebSocket binary messages (the
//!   `SPDY/3.1+portforward.k8s.io` subprotocol kubectl 1.31+ tries first);
//! - [`portforward`]: the `portforward.k8s.io` protocol over SPDY, and the
//!   `v4.channel.k8s.io` WebSocket channel protocol.
//!
//! Sans-HTTP: the caller does the HTTP upgrade and hands over the upgraded
//! byte stream or WebSocket, plus a [`portforward::Dial`] that reaches the pod.
//! Depends on tokio, flate2 (zlib with a preset dictionary) and
//! tokio-tungstenite; never on the API types.

pub mod portforward;
pub mod spdy;
pub mod tunnel;
