//! The child's side: `vaultsync render-templates` limits itself, reads one [`Request`] on stdin,
//! renders it in the sandbox, and answers with [`Line`]s on stdout.

use std::io::{self, Read, Write};
use std::process::ExitCode;

use super::protocol::{Line, Request};
use super::{limits, sandbox};

/// Largest request the child reads: the context holds at most a few Secrets' worth of data.
pub const MAX_REQUEST: usize = 16 * 1024 * 1024;

/// The `render-templates` subcommand: sets its limits, then serves one request on stdin/stdout.
/// Fails when it cannot set its limits (it then renders nothing) or when stdin or stdout fail; a
/// template error is an answer, not a failure.
pub fn serve_stdio() -> ExitCode {
    // Before the request is read: nothing a template does escapes the limits.
    if limits::apply().is_err() {
        let answer = failed("the rendering process could not set its limits".to_owned());
        let _ = write_line(&mut io::stdout().lock(), &answer);
        return ExitCode::FAILURE;
    }
    match serve(io::stdin().lock(), io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// Reads one request from `input` and writes the answer to `output`: a [`Line::Rendering`] before
/// each template, then [`Line::Rendered`] or [`Line::Failed`].
pub fn serve(input: impl Read, mut output: impl Write) -> io::Result<()> {
    let mut raw = Vec::new();
    input.take(MAX_REQUEST as u64 + 1).read_to_end(&mut raw)?;
    let answer = if raw.len() > MAX_REQUEST {
        failed(format!("the templates and their context exceed {MAX_REQUEST} bytes"))
    } else {
        match serde_json::from_slice::<Request>(&raw) {
            // serde_json's message may quote the input, which holds values.
            Err(_) => failed("the rendering request is unreadable".to_owned()),
            Ok(request) => {
                drop(raw);
                let result = sandbox::render_all(&request.templates, &request.context, |key| {
                    // A parent that stopped reading will see the final line fail too.
                    let _ = write_line(&mut output, &Line::Rendering(key.to_owned()));
                });
                match result {
                    Ok(values) => Line::Rendered(values),
                    Err(e) => Line::Failed {
                        key: e.key,
                        message: e.message,
                    },
                }
            }
        }
    };
    write_line(&mut output, &answer)
}

fn failed(message: String) -> Line {
    Line::Failed {
        key: String::new(),
        message,
    }
}

fn write_line(output: &mut impl Write, line: &Line) -> io::Result<()> {
    serde_json::to_writer(&mut *output, line)?;
    output.write_all(b"\n")?;
    output.flush()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::template::{Context, SourceContext};

    const CANARY: &str = "canary-3f9a1c";

    fn request(templates: &[(&str, &str)]) -> Request {
        let data: BTreeMap<String, Vec<u8>> = [
            ("password".to_owned(), CANARY.as_bytes().to_vec()),
            ("blob".to_owned(), vec![0xff, 0x00, b'\n']),
        ]
        .into();
        let context = Context {
            data: data.clone(),
            sources: vec![SourceContext {
                name: "db".into(),
                index: 0,
                kind: "kv",
                version: Some(7),
                data,
            }],
            name: "shop".into(),
            namespace: "team-a".into(),
            labels: [("app".to_owned(), "shop".to_owned())].into(),
            annotations: [("note".to_owned(), "x".to_owned())].into(),
        };
        let templates = templates.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Request::new(&templates, &context)
    }

    /// Serves `request` as the child does; returns its raw output and its lines.
    fn exchange(request: &Request) -> (String, Vec<Line>) {
        let mut output = Vec::new();
        serve(serde_json::to_vec(request).unwrap().as_slice(), &mut output).unwrap();
        let output = String::from_utf8(output).unwrap();
        let lines = output.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (output, lines)
    }

    #[test]
    fn a_request_round_trips_through_json_with_binary_data_intact() {
        let sent = request(&[("A", "{{ password }}")]);
        let received: Request = serde_json::from_slice(&serde_json::to_vec(&sent).unwrap()).unwrap();
        assert_eq!(received.templates, sent.templates);
        assert!(received.context == sent.context);
        assert_eq!(received.context.sources[0].data["blob"], [0xff, 0x00, b'\n']);
    }

    #[test]
    fn the_child_announces_each_template_then_answers_with_every_value() {
        let (_, lines) = exchange(&request(&[
            ("A", "{{ password }}/{{ sources.db.version }}"),
            ("B", "{{ data.blob | b64encode }}"),
        ]));
        let values = BTreeMap::from([
            ("A".to_owned(), format!("{CANARY}/7").into_bytes()),
            ("B".to_owned(), b"/wAK".to_vec()),
        ]);
        assert_eq!(
            lines,
            [
                Line::Rendering("A".into()),
                Line::Rendering("B".into()),
                Line::Rendered(values)
            ]
        );
    }

    #[test]
    fn a_failing_template_is_answered_with_its_key_and_no_value_of_the_context() {
        for text in [
            "{{ password + 1 }}",
            "{{ password | b64decode }}",
            "{{ password.missing }}",
            "{% for c in password %}{{ c.x }}{% endfor %}",
        ] {
            let (output, lines) = exchange(&request(&[("OK", "{{ password }}"), ("Z", text)]));
            assert!(
                !output.contains(CANARY) && !output.contains("Y2FuYXJ5"),
                "{text}: {output}"
            );
            match lines.last() {
                Some(Line::Failed { key, .. }) => assert_eq!(key, "Z"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn values_together_beyond_a_secret_are_refused() {
        let big = "{{ 'x' * 600000 }}";
        let (_, lines) = exchange(&request(&[("A", big), ("B", big)]));
        match lines.last() {
            Some(Line::Failed { key, message }) => {
                assert_eq!(key, "B");
                assert!(message.contains("together exceed 1048576 bytes"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unreadable_or_oversized_request_is_answered_without_echoing_it() {
        let mut output = Vec::new();
        serve(format!("{{\"templates\": \"{CANARY}\"").as_bytes(), &mut output).unwrap();
        let output = String::from_utf8(output).unwrap();
        assert!(output.contains("unreadable") && !output.contains(CANARY), "{output}");

        let mut output = Vec::new();
        serve(io::repeat(b' ').take(MAX_REQUEST as u64 + 10), &mut output).unwrap();
        assert!(String::from_utf8(output).unwrap().contains("exceed"));
    }
}
