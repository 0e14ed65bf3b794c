//! `serve` as a user runs it: its page, captions over HTTP, bad, oversized and stalled uploads
//! refused, and the server still up.

use captioner_datasets::shapes::{ShapesConfig, Split};
use captioner_model::{Captioning, ModelFiles};

use crate::common::{temp_dir, text, untrained_run, Cpu};

/// One HTTP/1.1 request to `address`: the status and the body.
pub fn http(address: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // A refused upload may be answered before it is all sent.
    stream.write_all(body).ok();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok();
    let response = text(&response);
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A `serve` process started from the source tree's root (`$CAPTIONER_MODEL` unset), killed
/// when dropped.
pub struct Serving {
    /// The process.
    pub child: std::process::Child,
    /// What it said on stderr until it listened.
    pub said: String,
    /// Where it listens: `127.0.0.1:PORT`.
    pub address: String,
    /// The rest of its stderr, kept open while it runs.
    _stderr: std::io::BufReader<std::process::ChildStderr>,
}

impl Serving {
    /// Starts `serve` with `args` and waits until it says where it listens.
    pub fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_serve"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("CAPTIONER_MODEL")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut said = String::new();
        let address = loop {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "serve stopped: {said}"
            );
            said.push_str(&line);
            if let Some(rest) = line.strip_prefix("Listening on http://") {
                break rest.split('/').next().unwrap().to_string();
            }
        };
        Self {
            child,
            said,
            address,
            _stderr: stderr,
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[test]
fn serve_answers_pictures_refuses_bad_oversized_and_stalled_ones_and_stays_up() {
    let dir = temp_dir("serve");
    let run = untrained_run(&dir);
    let server = Serving::start(&[
        "--model",
        run.root().to_str().unwrap(),
        "--port",
        "0",
        "--max-bytes",
        "100000",
        "--max-pixels",
        "1000000",
        "--body-timeout",
        "1",
    ]);
    let address = server.address.clone();
    let png = |picture: image::RgbImage| {
        let mut bytes = std::io::Cursor::new(Vec::new());
        picture
            .write_to(&mut bytes, image::ImageFormat::Png)
            .unwrap();
        bytes.into_inner()
    };
    let scene = &ShapesConfig::default().scenes(Split::Test)[0];
    let good = png(scene.render(64));

    let (status, page) = http(&address, "GET", "/", b"");
    assert_eq!(status, 200);
    assert!(page.contains("Drop a picture"), "{page}");

    let (status, body) = http(&address, "POST", "/caption", &good);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let words = answer["tokens"].as_array().unwrap().len() as u32;
    assert!(answer["caption"].is_string() && answer["score"].as_f64().unwrap() <= 0.0);
    assert!(answer["timing_ms"]["total"].as_f64().unwrap() > 0.0);
    assert!(answer.get("attention_png").is_none());

    let (status, body) = http(&address, "POST", "/caption?attention=1", &good);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    use base64::Engine;
    let grid = base64::engine::general_purpose::STANDARD
        .decode(answer["attention_png"].as_str().unwrap())
        .unwrap();
    let grid = image::load_from_memory(&grid).unwrap();
    let side = Captioning::<Cpu>::load(&ModelFiles::new(run.root()), &Default::default())
        .unwrap()
        .image_size() as u32;
    let (columns, _) = captioner::attention_image::grid_shape(words + 1);
    use captioner::attention_image::GAP;
    assert_eq!(grid.width(), GAP + columns * (side + GAP));

    let refused = |body: &[u8], status: u16, says: &str| {
        let (got, answer) = http(&address, "POST", "/caption", body);
        assert_eq!(got, status, "{answer}");
        let error: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let error = error["error"].as_str().unwrap();
        assert!(error.contains(says), "{error}");
    };
    refused(b"this is not a picture", 415, "not a readable image");
    refused(&vec![7u8; 150_000], 413, "over the limit of 100000 bytes");
    // Few bytes, but more pixels than allowed.
    refused(
        &png(image::RgbImage::new(1100, 1000)),
        413,
        "1100 x 1000 pixels is over the limit",
    );
    refused(b"", 400, "send a picture (JPEG, PNG");

    // A body that stops short of its declared length is answered 408 and its connection
    // closed, not held open.
    {
        use std::io::{Read, Write};
        let mut stalled = std::net::TcpStream::connect(&address).unwrap();
        stalled
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        write!(
            stalled,
            "POST /caption HTTP/1.1\r\nHost: {address}\r\nContent-Length: 5000\r\n\r\n"
        )
        .unwrap();
        stalled.write_all(&good[..20]).unwrap();
        let mut response = Vec::new();
        let closed = stalled.read_to_end(&mut response);
        let response = text(&response);
        assert!(
            closed.is_ok(),
            "the connection stayed open: {closed:?} {response}"
        );
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
        assert!(response.contains("stalled"), "{response}");
    }

    // Still up, and pictures sent at once are all answered.
    let answers: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| http(&address, "POST", "/caption", &good)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, body) in answers {
        assert_eq!(status, 200, "{body}");
    }
    drop(server);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn serve_with_a_model_given_twice_answers_as_the_model_alone_and_refuses_models_that_differ() {
    let shipped = crate::shipped_cli::shipped();
    let shipped = shipped.to_str().unwrap();
    let photo = std::fs::read("tests/fixtures/photos/cat.jpg").unwrap();
    let answer = |models: &[&str]| {
        let mut args = vec!["--port", "0"];
        for model in models {
            args.extend(["--model", model]);
        }
        let server = Serving::start(&args);
        let (status, body) = http(&server.address, "POST", "/caption?attention=1", &photo);
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        (answer, server.said.clone())
    };
    let (alone, _) = answer(&[shipped]);
    let (together, said) = answer(&[shipped, shipped]);
    assert!(
        said.contains(&format!("2 models caption together: {shipped}, {shipped}")),
        "{said}"
    );
    for field in ["caption", "tokens", "attention_png"] {
        assert_eq!(together[field], alone[field], "{field}");
    }
    // The mean of two equal probabilities, taken through exp and log: equal to rounding.
    let (a, b) = (alone["score"].as_f64(), together["score"].as_f64());
    assert!((a.unwrap() - b.unwrap()).abs() < 1e-4, "{a:?} {b:?}");

    let dir = temp_dir("serve-ensemble");
    let other = untrained_run(&dir);
    let other = other.root().to_str().unwrap();
    let out = crate::shipped_cli::run(
        "serve",
        &["--port", "0", "--model", shipped, "--model", other],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(
        said.contains("cannot caption together: their vocabularies differ"),
        "{said}"
    );
    std::fs::remove_dir_all(dir).ok();
}
