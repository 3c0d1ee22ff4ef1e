//! A small HTTP/1.1 file server on 127.0.0.1 for download tests: serves registered paths with
//! byte-range support, can cut a response short once (an interrupted download), and records
//! every request so tests can assert what went over the wire.
//!
//! Shared by the unit tests in `model/tests` and the CLI tests in `tests/lsp/model_cli.rs`
//! (included by `tests/lsp/main.rs` with `#[path]`), so it uses nothing from the crate.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the server answers for one path.
#[derive(Clone)]
pub struct Route {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// Answer `Range` requests with 206; when false they get the whole body with 200.
    pub honour_range: bool,
    /// Send only this many bytes of the first response (with the full Content-Length), then
    /// close the connection.
    pub cut_first_response_at: Option<usize>,
    /// Answer with `302 Found` to this location instead of the body.
    pub redirect_to: Option<String>,
    /// Sent with every response for this path (e.g. `X-Linked-Etag`).
    pub headers: Vec<(String, String)>,
    /// Hold every GET body back until this gate opens (a download that takes its time).
    pub gate: Option<Gate>,
}

/// A latch tests open to let held responses go.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn open(&self) {
        let (opened, changed) = &*self.0;
        *opened.lock().expect("gate lock") = true;
        changed.notify_all();
    }

    fn wait(&self) {
        let (opened, changed) = &*self.0;
        let mut opened = opened.lock().expect("gate lock");
        while !*opened {
            opened = changed.wait(opened).expect("gate lock");
        }
    }
}

impl Route {
    pub fn file(body: Vec<u8>) -> Route {
        Route {
            body,
            content_type: "application/octet-stream",
            honour_range: true,
            cut_first_response_at: None,
            redirect_to: None,
            headers: Vec::new(),
            gate: None,
        }
    }

    pub fn redirect(location: String) -> Route {
        Route {
            redirect_to: Some(location),
            ..Route::file(Vec::new())
        }
    }

    pub fn json(text: String) -> Route {
        Route {
            body: text.into_bytes(),
            content_type: "application/json",
            honour_range: false,
            cut_first_response_at: None,
            redirect_to: None,
            headers: Vec::new(),
            gate: None,
        }
    }
}

/// One request the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    requests: Mutex<Vec<SeenRequest>>,
}

pub struct TestServer {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    address: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 works");
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        // A client that hangs up mid-request is the client's problem.
                        let _ = serve(stream, &state);
                    }
                }
            })
        };
        TestServer {
            url: format!("http://{address}"),
            address,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn route(&self, path: &str, route: Route) {
        self.state
            .routes
            .lock()
            .expect("test server lock")
            .insert(path.to_owned(), route);
    }

    /// Serves the file `body` at `path`, holding every answer until the returned gate opens.
    pub fn route_gated_file(&self, path: &str, body: Vec<u8>) -> Gate {
        let gate = Gate::default();
        self.route(
            path,
            Route {
                gate: Some(gate.clone()),
                ..Route::file(body)
            },
        );
        gate
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state
            .requests
            .lock()
            .expect("test server lock")
            .clone()
    }

    /// The `Range` header of every GET so far, in order (`None` for a whole-file GET).
    pub fn get_ranges(&self) -> Vec<Option<String>> {
        self.requests()
            .into_iter()
            .filter(|request| request.method == "GET")
            .map(|request| request.range)
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // A response still held (a test that failed before opening its gate) must not hang us.
        for route in self.state.routes.lock().expect("test server lock").values() {
            if let Some(gate) = &route.gate {
                gate.open();
            }
        }
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, state: &State) -> std::io::Result<()> {
    // Bounded, so a confused client cannot hang the test forever.
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut words = request_line.split_whitespace();
    let method = words.next().unwrap_or("GET").to_owned();
    let target = words.next().unwrap_or("/").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let path = target.split('?').next().unwrap_or("/").to_owned();
    let range = headers.get("range").cloned();
    state
        .requests
        .lock()
        .expect("test server lock")
        .push(SeenRequest {
            method: method.clone(),
            path: path.clone(),
            range: range.clone(),
            authorization: headers.get("authorization").cloned(),
        });
    let route = {
        let mut routes = state.routes.lock().expect("test server lock");
        match routes.get_mut(&path) {
            Some(route) => {
                let served = route.clone();
                if method != "HEAD" {
                    route.cut_first_response_at = None;
                }
                Some(served)
            }
            None => None,
        }
    };
    let mut stream = stream;
    let Some(route) = route else {
        let body = b"not found";
        write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        stream.write_all(body)?;
        return Ok(());
    };
    let extra_headers: String = route
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    if let Some(location) = &route.redirect_to {
        write!(
            stream,
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\n{extra_headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    }
    let total_bytes = route.body.len();
    let start_bytes = range
        .as_deref()
        .filter(|_| route.honour_range)
        .and_then(|range| range.strip_prefix("bytes="))
        .and_then(|range| range.strip_suffix('-'))
        .and_then(|start| start.parse::<usize>().ok());
    let (status_line, extra_header, body) = match start_bytes {
        Some(start_bytes) if start_bytes >= total_bytes => {
            write!(
                stream,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total_bytes}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            return Ok(());
        }
        Some(start_bytes) => (
            "206 Partial Content",
            format!(
                "Content-Range: bytes {start_bytes}-{}/{total_bytes}\r\n",
                total_bytes - 1
            ),
            &route.body[start_bytes..],
        ),
        None => ("200 OK", String::new(), &route.body[..]),
    };
    write!(
        stream,
        "HTTP/1.1 {status_line}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{extra_header}{extra_headers}Accept-Ranges: bytes\r\nConnection: close\r\n\r\n",
        route.content_type,
        body.len()
    )?;
    if method == "HEAD" {
        return stream.shutdown(std::net::Shutdown::Write);
    }
    if let Some(gate) = &route.gate {
        gate.wait();
    }
    match route.cut_first_response_at {
        Some(cut_bytes) => stream.write_all(&body[..cut_bytes.min(body.len())])?,
        None => stream.write_all(body)?,
    }
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Write)
}
