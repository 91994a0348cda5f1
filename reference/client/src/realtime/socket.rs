//! One WebSocket connection speaking Supabase Realtime's Phoenix channel protocol.

use crate::transport::{Stream, Transport};
use fsync_protocol::realtime::{self as wire, Frame, Vsn};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// Why a Realtime connection failed.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    /// The server refused the upgrade with an HTTP error (`{"error": ...}`).
    #[error("connection refused with HTTP {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("websocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    #[error("the server sent a frame that is not Realtime: {0}")]
    Protocol(String),
    #[error("the connection closed")]
    Closed,
}

/// A connection to `/realtime/v1/websocket`.
pub struct RealtimeSocket {
    ws: WebSocketStream<Stream>,
    vsn: Vsn,
    next_ref: u64,
}

impl RealtimeSocket {
    /// Connects over TCP to the Realtime endpoint of the API at `api_url` (`http://host:port`).
    pub async fn connect(api_url: &str, apikey: &str, vsn: Vsn) -> Result<RealtimeSocket, RealtimeError> {
        RealtimeSocket::connect_via(&Transport::tcp(), api_url, apikey, vsn).await
    }

    /// Connects through `transport` to the Realtime endpoint of the API at `api_url`.
    pub async fn connect_via(
        transport: &Transport,
        api_url: &str,
        apikey: &str,
        vsn: Vsn,
    ) -> Result<RealtimeSocket, RealtimeError> {
        let base = api_url.trim_end_matches('/');
        let ws_base = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.to_owned()
        };
        let vsn_param = match vsn {
            Vsn::V1 => "1.0.0",
            Vsn::V2 => "2.0.0",
        };
        let url = format!("{ws_base}/realtime/v1/websocket?apikey={apikey}&vsn={vsn_param}");
        match transport.websocket(&url, None).await {
            Ok(ws) => Ok(RealtimeSocket { ws, vsn, next_ref: 0 }),
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response.body().as_deref().unwrap_or_default();
                let message = serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
                Err(RealtimeError::Refused { status, message })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn vsn(&self) -> Vsn {
        self.vsn
    }

    /// A fresh message ref.
    pub fn make_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    pub async fn send(&mut self, frame: &Frame) -> Result<(), RealtimeError> {
        self.ws.send(Message::Text(wire::encode(self.vsn, frame).into())).await?;
        Ok(())
    }

    /// Sends a text frame as is (tests use it for malformed input).
    pub async fn send_text(&mut self, text: &str) -> Result<(), RealtimeError> {
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// Sends a binary frame as is.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), RealtimeError> {
        self.ws.send(Message::Binary(bytes.into())).await?;
        Ok(())
    }

    /// The next frame from the server; `None` when the connection closed.
    pub async fn recv(&mut self) -> Result<Option<Frame>, RealtimeError> {
        loop {
            match self.ws.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Text(text))) => {
                    return wire::decode_text(self.vsn, text.as_str())
                        .map(Some)
                        .map_err(|e| RealtimeError::Protocol(e.to_string()));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Sends `phx_join` for `topic` and returns its join ref.
    pub async fn push_join(&mut self, topic: &str, payload: Value) -> Result<String, RealtimeError> {
        let join_ref = self.make_ref();
        let frame = Frame {
            join_ref: Some(join_ref.clone()),
            msg_ref: Some(join_ref.clone()),
            topic: topic.to_owned(),
            event: "phx_join".to_owned(),
            payload,
        };
        self.send(&frame).await?;
        Ok(join_ref)
    }

    /// Sends a heartbeat and returns its ref.
    pub async fn push_heartbeat(&mut self) -> Result<String, RealtimeError> {
        let msg_ref = self.make_ref();
        let frame = Frame {
            join_ref: None,
            msg_ref: Some(msg_ref.clone()),
            topic: "phoenix".to_owned(),
            event: "heartbeat".to_owned(),
            payload: json!({}),
        };
        self.send(&frame).await?;
        Ok(msg_ref)
    }

    /// Sends `event` with `payload` on a joined channel and returns its ref.
    pub async fn push(
        &mut self,
        topic: &str,
        join_ref: &str,
        event: &str,
        payload: Value,
    ) -> Result<String, RealtimeError> {
        let msg_ref = self.make_ref();
        let frame = Frame {
            join_ref: Some(join_ref.to_owned()),
            msg_ref: Some(msg_ref.clone()),
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload,
        };
        self.send(&frame).await?;
        Ok(msg_ref)
    }

    /// Waits for the `phx_reply` to `msg_ref`, returning it and every other frame seen meanwhile.
    pub async fn await_reply(&mut self, msg_ref: &str) -> Result<(Frame, Vec<Frame>), RealtimeError> {
        let mut others = Vec::new();
        loop {
            let Some(frame) = self.recv().await? else { return Err(RealtimeError::Closed) };
            if frame.event == "phx_reply" && frame.msg_ref.as_deref() == Some(msg_ref) {
                return Ok((frame, others));
            }
            others.push(frame);
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// The join payload realtime-js sends for a private broadcast channel.
pub fn private_join_payload(token: &str) -> Value {
    json!({
        "config": {
            "broadcast": {"ack": false, "self": false},
            "presence": {"key": "", "enabled": false},
            "postgres_changes": [],
            "private": true,
        },
        "access_token": token,
    })
}
