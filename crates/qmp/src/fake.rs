//! A scripted QEMU for unit tests: each expected command is answered with a given line, and
//! unexpected commands fail the test with a clear message.

use std::collections::VecDeque;

use serde_json::Value;

use crate::{QmpError, Transport};

/// One step of a script.
#[derive(Debug, Clone)]
pub enum Step {
    /// QEMU sends this line unprompted (greeting, event).
    Send(String),
    /// QEMU expects this command and answers with this JSON (the id is filled in).
    Expect {
        /// The command name.
        command: String,
        /// The reply without id, e.g. `{"return": {}}`.
        reply: Value,
    },
}

/// A transport that plays a script.
#[derive(Debug, Default)]
pub struct Scripted {
    steps: VecDeque<Step>,
    pending: VecDeque<String>,
    /// Every command received, in order.
    pub received: Vec<String>,
}

impl Scripted {
    /// A QEMU that greets with version 10.0.2 and accepts `qmp_capabilities`, then plays `steps`.
    pub fn new(steps: Vec<Step>) -> Self {
        let mut all = vec![
            Step::Send(r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}}, "capabilities": []}}"#.into()),
            Step::Expect { command: "qmp_capabilities".into(), reply: serde_json::json!({"return": {}}) },
        ];
        all.extend(steps);
        Self { steps: all.into(), ..Default::default() }
    }

    fn advance(&mut self) {
        while let Some(Step::Send(_)) = self.steps.front() {
            if let Some(Step::Send(line)) = self.steps.pop_front() {
                self.pending.push_back(line);
            }
        }
    }
}

impl Transport for Scripted {
    fn send(&mut self, line: &str) -> Result<(), QmpError> {
        let v: Value = serde_json::from_str(line).map_err(|e| QmpError::Protocol(e.to_string()))?;
        let command = v["execute"].as_str().unwrap_or_default().to_string();
        self.received.push(command.clone());
        self.advance();
        match self.steps.pop_front() {
            Some(Step::Expect { command: want, mut reply }) if want == command => {
                reply["id"] = v["id"].clone();
                self.pending.push_back(reply.to_string());
                self.advance();
                Ok(())
            }
            other => Err(QmpError::Protocol(format!("script expected {other:?}, got command {command}"))),
        }
    }
    fn recv(&mut self) -> Result<Option<String>, QmpError> {
        self.advance();
        Ok(self.pending.pop_front())
    }
    /// Nothing to say while steps remain is a QEMU that is silent for now; with none left, the
    /// script has ended.
    fn recv_within(&mut self, _timeout: std::time::Duration) -> Result<crate::Received, QmpError> {
        self.advance();
        Ok(match self.pending.pop_front() {
            Some(line) => crate::Received::Line(line),
            None if self.steps.is_empty() => crate::Received::Closed,
            None => crate::Received::TimedOut,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Client;
    use serde_json::json;

    #[test]
    fn client_negotiates_and_keeps_events_that_arrive_before_the_reply() {
        let t = Scripted::new(vec![
            Step::Send(r#"{"event": "RESUME"}"#.into()),
            Step::Expect {
                command: "query-status".into(),
                reply: json!({"return": {"status": "running", "running": true}}),
            },
        ]);
        let mut c = Client::negotiate(t).unwrap();
        assert_eq!(c.version, (10, 0, 2));
        assert_eq!(c.status().unwrap(), "running");
        assert_eq!(c.take_events()[0].name, "RESUME");
    }

    #[test]
    fn command_error_names_the_command_and_qemus_words() {
        let t = Scripted::new(vec![Step::Expect {
            command: "stop".into(),
            reply: json!({"error": {"class": "GenericError", "desc": "not now"}}),
        }]);
        let mut c = Client::negotiate(t).unwrap();
        assert_eq!(
            c.execute("stop", None).unwrap_err().to_string(),
            "QEMU refused stop: not now (GenericError)"
        );
    }

    #[test]
    fn commands_sent_together_are_answered_in_order_and_the_first_refusal_is_the_error() {
        let t = Scripted::new(vec![
            Step::Expect { command: "a".into(), reply: json!({"return": {"n": 1}}) },
            Step::Send(r#"{"event": "STOP"}"#.into()),
            Step::Expect { command: "b".into(), reply: json!({"return": {"n": 2}}) },
            Step::Expect {
                command: "c".into(),
                reply: json!({"error": {"class": "GenericError", "desc": "no c"}}),
            },
            Step::Expect {
                command: "d".into(),
                reply: json!({"error": {"class": "GenericError", "desc": "no d"}}),
            },
            Step::Expect { command: "e".into(), reply: json!({"return": {"n": 5}}) },
        ]);
        let mut c = Client::negotiate(t).unwrap();
        let v = c.execute_all(&[("a", None), ("b", Some(json!({"x": 1})))]).unwrap();
        assert_eq!(v, vec![json!({"n": 1}), json!({"n": 2})]);
        let e = c.execute_all(&[("c", None), ("d", None)]).unwrap_err();
        assert_eq!(e.to_string(), "QEMU refused c: no c (GenericError)");
        // Both answers were read: the next command gets its own.
        assert_eq!(c.execute("e", None).unwrap(), json!({"n": 5}));
        assert_eq!(c.take_events()[0].name, "STOP");
    }

    #[test]
    fn waiting_for_an_event_keeps_the_others_and_gives_up_on_silence() {
        let t = Scripted::new(vec![
            Step::Send(r#"{"event": "MIGRATION", "data": {"status": "setup"}}"#.into()),
            Step::Send(r#"{"event": "RESUME"}"#.into()),
            Step::Send(r#"{"event": "MIGRATION", "data": {"status": "completed"}}"#.into()),
            Step::Expect { command: "query-status".into(), reply: json!({"return": {"status": "running"}}) },
        ]);
        let mut c = Client::negotiate(t).unwrap();
        let done = |e: &crate::Event| e.name == "MIGRATION" && e.data["status"] == "completed";
        let e = c.wait_event_within(std::time::Duration::from_millis(10), done).unwrap().unwrap();
        assert_eq!(e.data["status"], "completed");
        // QEMU has nothing more to say until asked: the wait ends empty-handed.
        assert_eq!(c.wait_event_within(std::time::Duration::from_millis(10), done).unwrap(), None);
        assert_eq!(c.status().unwrap(), "running");
        let kept: Vec<String> = c.take_events().into_iter().map(|e| e.name).collect();
        assert_eq!(kept, ["MIGRATION", "RESUME"]);
    }

    #[test]
    fn at_most_so_many_events_are_kept() {
        let mut steps: Vec<Step> =
            (0..crate::MAX_KEPT_EVENTS + 10).map(|i| Step::Send(format!(r#"{{"event": "E{i}"}}"#))).collect();
        steps.push(Step::Expect { command: "cont".into(), reply: json!({"return": {}}) });
        let mut c = Client::negotiate(Scripted::new(steps)).unwrap();
        c.execute("cont", None).unwrap();
        let kept = c.take_events();
        assert_eq!(kept.len(), crate::MAX_KEPT_EVENTS);
        assert_eq!(kept[0].name, "E10", "the oldest are dropped");
    }

    #[test]
    fn qemu_closing_mid_command_is_reported() {
        let t = Scripted::new(vec![]);
        let mut c = Client::negotiate(t).unwrap();
        assert!(matches!(c.execute("cont", None).unwrap_err(), QmpError::Protocol(_)));
    }
}
