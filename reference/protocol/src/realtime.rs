//! The Phoenix channel frames Supabase Realtime speaks, in both serializations:
//! `vsn=1.0.0` JSON objects and `vsn=2.0.0` JSON arrays `[join_ref, ref, topic, event, payload]`,
//! plus 2.0.0's binary user-broadcast push (kind 3) that realtime-js sends for `channel.send()`.
//! Pure functions: no I/O.

use serde_json::{json, Map, Value};

/// How the `system` message begins that closes a stopped preview session's channel (the fsync
/// server's own, beside Supabase's words).
pub const SESSION_STOPPED: &str = "SessionStopped";

/// The two serializer versions (`vsn` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Vsn {
    V1,
    V2,
}

impl Vsn {
    /// Parses the `vsn` query parameter; absent means 1.0.0, as on Supabase.
    pub fn parse(value: Option<&str>) -> Option<Vsn> {
        match value {
            None | Some("1.0.0") => Some(Vsn::V1),
            Some("2.0.0") => Some(Vsn::V2),
            Some(_) => None,
        }
    }
}

/// One channel message in either direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub join_ref: Option<String>,
    pub msg_ref: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Value,
}

/// Why an incoming frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    #[error("frame is not JSON: {0}")]
    NotJson(String),
    #[error("binary frame of kind {0} is not a user broadcast push")]
    UnsupportedBinary(u8),
}

/// The binary kind realtime-js uses for `channel.send({type: 'broadcast', ...})` under 2.0.0.
pub const KIND_USER_BROADCAST_PUSH: u8 = 3;

fn ref_of(value: &Value) -> Result<Option<String>, WireError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(WireError::Malformed("ref and join_ref must be strings or null")),
    }
}

fn string_of(value: &Value, what: &'static str) -> Result<String, WireError> {
    value.as_str().map(str::to_owned).ok_or(WireError::Malformed(what))
}

/// Decodes a text frame.
pub fn decode_text(vsn: Vsn, text: &str) -> Result<Frame, WireError> {
    let value: Value = serde_json::from_str(text).map_err(|e| WireError::NotJson(e.to_string()))?;
    match vsn {
        Vsn::V2 => {
            let Value::Array(items) = value else {
                return Err(WireError::Malformed("2.0.0 frames are arrays [join_ref, ref, topic, event, payload]"));
            };
            let [join_ref, msg_ref, topic, event, payload]: [Value; 5] =
                items.try_into().map_err(|_| WireError::Malformed("2.0.0 frames have five elements"))?;
            Ok(Frame {
                join_ref: ref_of(&join_ref)?,
                msg_ref: ref_of(&msg_ref)?,
                topic: string_of(&topic, "topic must be a string")?,
                event: string_of(&event, "event must be a string")?,
                payload,
            })
        }
        Vsn::V1 => {
            let Value::Object(mut fields) = value else {
                return Err(WireError::Malformed("1.0.0 frames are objects {topic, event, payload, ref}"));
            };
            Ok(Frame {
                join_ref: ref_of(fields.get("join_ref").unwrap_or(&Value::Null))?,
                msg_ref: ref_of(fields.get("ref").unwrap_or(&Value::Null))?,
                topic: string_of(fields.get("topic").unwrap_or(&Value::Null), "topic must be a string")?,
                event: string_of(fields.get("event").unwrap_or(&Value::Null), "event must be a string")?,
                payload: fields.remove("payload").unwrap_or(Value::Object(Map::new())),
            })
        }
    }
}

/// Decodes a 2.0.0 binary frame: only the kind-3 user broadcast push is accepted. It becomes the
/// same frame a text `broadcast` push would be:
/// `{type: "broadcast", event, payload}` (a binary payload is refused).
pub fn decode_binary(bytes: &[u8]) -> Result<Frame, WireError> {
    let (&kind, rest) = bytes.split_first().ok_or(WireError::Malformed("empty binary frame"))?;
    if kind != KIND_USER_BROADCAST_PUSH {
        return Err(WireError::UnsupportedBinary(kind));
    }
    if rest.len() < 6 {
        return Err(WireError::Malformed("kind-3 header is six bytes"));
    }
    let lens = [rest[0], rest[1], rest[2], rest[3], rest[4]].map(usize::from);
    let encoding = rest[5];
    let mut body = &rest[6..];
    let mut take = |n: usize| -> Result<&[u8], WireError> {
        if body.len() < n {
            return Err(WireError::Malformed("kind-3 frame is shorter than its header says"));
        }
        let (head, tail) = body.split_at(n);
        body = tail;
        Ok(head)
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| WireError::Malformed("kind-3 field is not UTF-8"));
    let join_ref = text(take(lens[0])?)?;
    let msg_ref = text(take(lens[1])?)?;
    let topic = text(take(lens[2])?)?;
    let user_event = text(take(lens[3])?)?;
    let metadata = take(lens[4])?.to_vec();
    let user_payload = body;
    if encoding != 1 {
        return Err(WireError::Malformed("only JSON payloads (encoding 1) can be broadcast"));
    }
    let payload: Value = serde_json::from_slice(user_payload).map_err(|e| WireError::NotJson(e.to_string()))?;
    let mut broadcast = json!({"type": "broadcast", "event": user_event, "payload": payload});
    if !metadata.is_empty() {
        if let Ok(meta) = serde_json::from_slice::<Value>(&metadata) {
            broadcast["meta"] = meta;
        }
    }
    Ok(Frame {
        join_ref: (!join_ref.is_empty()).then_some(join_ref),
        msg_ref: (!msg_ref.is_empty()).then_some(msg_ref),
        topic,
        event: "broadcast".to_owned(),
        payload: broadcast,
    })
}

/// Encodes a frame for the client. The 1.0.0 serializer sends `{topic, event, payload, ref}`
/// (no `join_ref`), as Phoenix's V1 serializer does.
pub fn encode(vsn: Vsn, frame: &Frame) -> String {
    match vsn {
        Vsn::V2 => json!([frame.join_ref, frame.msg_ref, frame.topic, frame.event, frame.payload]).to_string(),
        Vsn::V1 => json!({
            "topic": frame.topic, "event": frame.event, "payload": frame.payload, "ref": frame.msg_ref,
        })
        .to_string(),
    }
}

/// A broadcast delivery, built from the payload's JSON text without re-parsing it:
/// `{"type":"broadcast","event":..,"payload":<payload>,"meta":{"id":..}}` on `topic`.
pub fn encode_broadcast(vsn: Vsn, topic: &str, event: &str, payload_json: &str, id: &str) -> String {
    let body = format!(
        r#"{{"type":"broadcast","event":{},"payload":{},"meta":{{"id":{}}}}}"#,
        Value::from(event),
        payload_json,
        Value::from(id)
    );
    let topic = Value::from(topic);
    match vsn {
        Vsn::V2 => format!(r#"[null,null,{topic},"broadcast",{body}]"#),
        Vsn::V1 => format!(r#"{{"topic":{topic},"event":"broadcast","payload":{body},"ref":null}}"#),
    }
}

/// A `phx_reply` to `request`.
pub fn reply(request: &Frame, status: &str, response: Value) -> Frame {
    Frame {
        join_ref: request.join_ref.clone(),
        msg_ref: request.msg_ref.clone(),
        topic: request.topic.clone(),
        event: "phx_reply".to_owned(),
        payload: json!({"status": status, "response": response}),
    }
}

/// A `system` message on a channel (`extension: "system"`).
pub fn system(join_ref: Option<String>, topic: &str, status: &str, message: &str) -> Frame {
    let channel = topic.strip_prefix("realtime:").unwrap_or(topic);
    Frame {
        join_ref,
        msg_ref: None,
        topic: topic.to_owned(),
        event: "system".to_owned(),
        payload: json!({"extension": "system", "status": status, "message": message, "channel": channel}),
    }
}

/// `phx_close` for a channel.
pub fn close(join_ref: Option<String>, topic: &str) -> Frame {
    Frame { join_ref, msg_ref: None, topic: topic.to_owned(), event: "phx_close".to_owned(), payload: json!({}) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_serializations() {
        let v2 = decode_text(Vsn::V2, r#"["1","1","realtime:room","phx_join",{"config":{}}]"#).unwrap();
        assert_eq!(v2.join_ref.as_deref(), Some("1"));
        assert_eq!(v2.topic, "realtime:room");
        let hb = decode_text(Vsn::V2, r#"[null,"26","phoenix","heartbeat",{}]"#).unwrap();
        assert_eq!((hb.join_ref, hb.msg_ref.as_deref()), (None, Some("26")));
        let v1 = decode_text(Vsn::V1, r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":3}"#).unwrap();
        assert_eq!((v1.msg_ref.as_deref(), v1.event.as_str()), (Some("3"), "heartbeat"));
    }

    #[test]
    fn refuses_malformed_frames() {
        for (vsn, text) in [
            (Vsn::V2, "not json"),
            (Vsn::V2, r#"{"topic":"x"}"#),
            (Vsn::V2, r#"["1","1","t"]"#),
            (Vsn::V2, r#"["1","1",5,"e",{}]"#),
            (Vsn::V1, r#"["1","1","t","e",{}]"#),
            (Vsn::V1, r#"{"topic":"t"}"#),
            (Vsn::V1, r#"{"topic":"t","event":"e","ref":{}}"#),
        ] {
            assert!(decode_text(vsn, text).is_err(), "{text}");
        }
    }

    #[test]
    fn encodes_replies_like_phoenix() {
        let request = decode_text(Vsn::V2, r#"[null,"3","phoenix","heartbeat",{}]"#).unwrap();
        let ok = reply(&request, "ok", json!({}));
        assert_eq!(encode(Vsn::V2, &ok), r#"[null,"3","phoenix","phx_reply",{"response":{},"status":"ok"}]"#);
        let v1: Value = serde_json::from_str(&encode(Vsn::V1, &ok)).unwrap();
        assert_eq!(
            v1,
            json!({"topic": "phoenix", "event": "phx_reply", "payload": {"status": "ok", "response": {}}, "ref": "3"})
        );
    }

    #[test]
    fn broadcast_deliveries_embed_the_payload_verbatim() {
        let text = encode_broadcast(Vsn::V2, "realtime:project:x", "file:update", r#"{"seq":1}"#, "m1");
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            json!([null, null, "realtime:project:x", "broadcast", {"type": "broadcast", "event": "file:update", "payload": {"seq": 1}, "meta": {"id": "m1"}}])
        );
        let v1: Value = serde_json::from_str(&encode_broadcast(Vsn::V1, "t", "e", "[]", "m")).unwrap();
        assert_eq!(v1["payload"]["payload"], json!([]));
    }

    fn kind3(join_ref: &str, msg_ref: &str, topic: &str, event: &str, payload: &[u8], encoding: u8) -> Vec<u8> {
        let mut out =
            vec![3, join_ref.len() as u8, msg_ref.len() as u8, topic.len() as u8, event.len() as u8, 0, encoding];
        for part in [join_ref.as_bytes(), msg_ref.as_bytes(), topic.as_bytes(), event.as_bytes(), payload] {
            out.extend_from_slice(part);
        }
        out
    }

    #[test]
    fn decodes_kind_3_user_broadcast_pushes() {
        let frame = decode_binary(&kind3("1", "2", "realtime:room", "cursor", br#"{"x":1}"#, 1)).unwrap();
        assert_eq!(frame.event, "broadcast");
        assert_eq!(frame.msg_ref.as_deref(), Some("2"));
        assert_eq!(frame.payload, json!({"type": "broadcast", "event": "cursor", "payload": {"x": 1}}));
    }

    #[test]
    fn refuses_binary_garbage() {
        assert!(decode_binary(&[]).is_err());
        assert_eq!(decode_binary(&[9, 0, 0]), Err(WireError::UnsupportedBinary(9)));
        assert!(decode_binary(&[3, 1, 1]).is_err());
        assert!(decode_binary(&[3, 200, 0, 0, 0, 0, 1, b'x']).is_err(), "lengths past the end");
        assert!(decode_binary(&kind3("1", "2", "t", "e", b"\x00\x01", 0)).is_err(), "binary payload");
        assert!(decode_binary(&kind3("1", "2", "t", "e", b"{nope", 1)).is_err(), "bad JSON");
    }
}
