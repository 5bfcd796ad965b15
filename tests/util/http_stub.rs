//! A tiny HTTP/1.1 server on 127.0.0.1:0 for lookups popbridge makes over HTTP (Thunderbird
//! autoconfig files): it serves fixed bodies by path (the query string ignored), answers 404
//! otherwise, and records each request line. Blocking, one thread per connection; dropping it
//! stops it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub struct HttpStub {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

fn serve(stream: TcpStream, files: &HashMap<String, (String, Vec<u8>)>, requests: &Mutex<Vec<String>>) {
    let Ok(clone) = stream.try_clone() else { return };
    let mut reader = BufReader::new(clone);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // The rest of the head (no request here has a body).
    loop {
        let mut l = String::new();
        match reader.read_line(&mut l) {
            Ok(0) | Err(_) => break,
            Ok(_) if l == "\r\n" || l == "\n" => break,
            Ok(_) => {}
        }
    }
    let request_line = request_line.trim_end().to_string();
    requests.lock().unwrap_or_else(|e| e.into_inner()).push(request_line.clone());
    let path = request_line.split(' ').nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let mut out = stream;
    let response = match files.get(path) {
        Some((ctype, body)) => {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            r
        }
        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found".to_vec(),
    };
    let _ = out.write_all(&response);
    let _ = out.flush();
}

impl HttpStub {
    /// Serves `files`: (path, content type, body).
    pub fn start(files: &[(&str, &str, &[u8])]) -> HttpStub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the HTTP stub");
        let addr = listener.local_addr().expect("local addr");
        let files: Arc<HashMap<String, (String, Vec<u8>)>> =
            Arc::new(files.iter().map(|(p, t, b)| (p.to_string(), (t.to_string(), b.to_vec()))).collect());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, rq) = (stop.clone(), requests.clone());
        let acceptor = super::accept::spawn(
            format!("http-stub-{}", addr.port()),
            listener,
            move || st.load(Ordering::SeqCst),
            move |stream| {
                let (files, rq) = (files.clone(), rq.clone());
                vec![std::thread::spawn(move || serve(stream, &files, &rq))]
            },
        );
        HttpStub { addr, requests, stop, acceptor: Some(acceptor) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The request lines received, in order ("GET /path?query HTTP/1.1").
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}
