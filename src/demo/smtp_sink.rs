//! The demo's outgoing server: a minimal SMTP server on loopback that accepts every message and
//! drops it into the sample POP3 mailbox — so mail sent from the demo account comes back to it at
//! the next fetch, and the whole round trip (submission → outbox → relay → POP → IMAP) is visible.
//! Plaintext, no authentication: it only ever listens on 127.0.0.1 for the demo's lifetime.

use std::sync::Arc;

use smtp_proto::request::receiver::{DataReceiver, RequestReceiver};
use smtp_proto::{Error as ProtoError, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::pop3_server::Mailbox;

pub async fn serve(listener: TcpListener, mailbox: Arc<Mailbox>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            r = listener.accept() => if let Ok((s, _)) = r {
                tokio::spawn(session(s, mailbox.clone()));
            },
            _ = &mut shutdown => return,
        }
    }
}

async fn session(mut s: TcpStream, mailbox: Arc<Mailbox>) {
    let mut input: Vec<u8> = Vec::new();
    let mut rx = RequestReceiver::default();
    if s.write_all(b"220 demo-smtp ready\r\n").await.is_err() {
        return;
    }
    let mut buf = [0u8; 8192];
    loop {
        let mut iter = input.iter();
        let req = rx.ingest(&mut iter).map(|r| r.into_owned());
        let used = input.len() - iter.as_slice().len();
        input.drain(..used);
        let reply: &[u8] = match req {
            Err(ProtoError::NeedsMoreData { .. }) => match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    input.extend_from_slice(&buf[..n]);
                    continue;
                }
            },
            Err(_) => b"500 syntax error\r\n",
            Ok(Request::Ehlo { .. }) => b"250-demo-smtp\r\n250-8BITMIME\r\n250 PIPELINING\r\n",
            Ok(Request::Helo { .. }) => b"250 demo-smtp\r\n",
            Ok(Request::Data) => {
                if s.write_all(b"354 go ahead\r\n").await.is_err() {
                    return;
                }
                let mut data = DataReceiver::new();
                let mut msg = Vec::new();
                loop {
                    let mut iter = input.iter();
                    let done = data.ingest(&mut iter, &mut msg);
                    let used = input.len() - iter.as_slice().len();
                    input.drain(..used);
                    if done {
                        break;
                    }
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => input.extend_from_slice(&buf[..n]),
                    }
                }
                mailbox.add(msg);
                b"250 accepted into the demo mailbox\r\n"
            }
            Ok(Request::Quit) => {
                let _ = s.write_all(b"221 bye\r\n").await;
                return;
            }
            Ok(_) => b"250 ok\r\n",
        };
        if s.write_all(reply).await.is_err() {
            return;
        }
    }
}
