//! Decoding QMP messages (QEMU docs/interop/qmp-spec.rst): the greeting `{"QMP": {...}}`, a
//! success `{"return": ..., "id": ...}`, an error `{"error": {"class", "desc"}, "id"}` and an
//! event `{"event", "data", "timestamp"}`.

use serde_json::Value;

/// Errors of the QMP layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QmpError {
    /// The socket failed.
    #[error("QMP I/O error: {0}")]
    Io(String),
    /// QEMU sent something that is not QMP.
    #[error("QMP protocol error: {0}")]
    Protocol(String),
    /// A command failed; QEMU's class and description.
    #[error("QEMU refused {command}: {desc} ({class})")]
    Command {
        /// The command.
        command: String,
        /// QEMU's error class, e.g. `GenericError`.
        class: String,
        /// QEMU's description.
        desc: String,
    },
}

/// An asynchronous event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Name, e.g. `SHUTDOWN`, `STOP`, `RESUME`.
    pub name: String,
    /// Its data (or null).
    pub data: Value,
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The greeting with QEMU's version.
    Greeting {
        /// (major, minor, micro).
        version: (u64, u64, u64),
    },
    /// A command's success.
    Return {
        /// The id sent with the command.
        id: Option<u64>,
        /// The value.
        value: Value,
    },
    /// A command's failure.
    Error {
        /// The id sent with the command.
        id: Option<u64>,
        /// Error class.
        class: String,
        /// Description.
        desc: String,
    },
    /// An event.
    Event(Event),
}

/// Decodes one line.
pub fn decode(line: &str) -> Result<Message, QmpError> {
    let v: Value = serde_json::from_str(line).map_err(|e| {
        QmpError::Protocol(format!("not JSON ({e}): {}", line.chars().take(200).collect::<String>()))
    })?;
    let Some(obj) = v.as_object() else {
        return Err(QmpError::Protocol(format!(
            "not a JSON object: {}",
            line.chars().take(200).collect::<String>()
        )));
    };
    let id = obj.get("id").and_then(Value::as_u64);
    if let Some(q) = obj.get("QMP") {
        let ver = &q["version"]["qemu"];
        let n = |k: &str| ver[k].as_u64().unwrap_or(0);
        return Ok(Message::Greeting { version: (n("major"), n("minor"), n("micro")) });
    }
    if let Some(r) = obj.get("return") {
        return Ok(Message::Return { id, value: r.clone() });
    }
    if let Some(e) = obj.get("error") {
        let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
        return Ok(Message::Error { id, class: s("class"), desc: s("desc") });
    }
    if let Some(name) = obj.get("event").and_then(Value::as_str) {
        return Ok(Message::Event(Event {
            name: name.to_string(),
            data: obj.get("data").cloned().unwrap_or(Value::Null),
        }));
    }
    Err(QmpError::Protocol(format!("unknown QMP message: {}", line.chars().take(200).collect::<String>())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_gives_the_version() {
        let m = decode(r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": ["oob"]}}"#).unwrap();
        assert_eq!(m, Message::Greeting { version: (10, 0, 2) });
    }

    #[test]
    fn error_keeps_class_and_description() {
        let m = decode(r#"{"id": 3, "error": {"class": "GenericError", "desc": "nope"}}"#).unwrap();
        assert_eq!(m, Message::Error { id: Some(3), class: "GenericError".into(), desc: "nope".into() });
    }

    #[test]
    fn event_and_return_decode() {
        assert!(
            matches!(decode(r#"{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}"#).unwrap(), Message::Event(Event { ref name, .. }) if name == "STOP")
        );
        assert_eq!(
            decode(r#"{"return": {}, "id": 1}"#).unwrap(),
            Message::Return { id: Some(1), value: serde_json::json!({}) }
        );
    }

    #[test]
    fn garbage_is_a_protocol_error_quoting_the_input() {
        assert!(matches!(decode("hello").unwrap_err(), QmpError::Protocol(ref m) if m.contains("hello")));
        assert!(
            matches!(decode("[1,2]").unwrap_err(), QmpError::Protocol(ref m) if m.contains("not a JSON object"))
        );
        assert!(matches!(decode("{}").unwrap_err(), QmpError::Protocol(ref m) if m.contains("unknown")));
    }
}
