//! The accept loop of the scripted peers (`fake_pop3`, `pop_proxy`): plain threads, a listener
//! polled so that a stop flag ends it, each connection served on threads of its own.
#![allow(dead_code)]

use std::io;
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

/// Starts thread `name`, which accepts on `listener` until `stopped()` holds (checked every 5 ms
/// at the latest) and hands each connection, blocking again, to `serve`, which returns the
/// threads it started for it. Finished ones are joined as it goes; once stopped, it closes the
/// listener and then waits for the rest.
pub fn spawn(
    name: String,
    listener: TcpListener,
    stopped: impl Fn() -> bool + Send + 'static,
    mut serve: impl FnMut(TcpStream) -> Vec<JoinHandle<()>> + Send + 'static,
) -> JoinHandle<()> {
    listener.set_nonblocking(true).expect("nonblocking listener");
    let run = move || {
        let mut workers: Vec<JoinHandle<()>> = Vec::new();
        while !stopped() {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    workers.extend(serve(stream));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
            let (done, live): (Vec<_>, Vec<_>) = workers.into_iter().partition(|h| h.is_finished());
            for h in done {
                let _ = h.join();
            }
            workers = live;
        }
        drop(listener);
        for h in workers {
            let _ = h.join();
        }
    };
    std::thread::Builder::new().name(name).spawn(run).expect("spawn an acceptor thread")
}

mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn each_connection_is_served_until_the_stop_and_then_the_port_is_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let acceptor = super::spawn(
            "accept-test".into(),
            listener,
            move || s.load(Ordering::SeqCst),
            |mut c| {
                vec![std::thread::spawn(move || {
                    let mut b = [0u8; 1];
                    c.read_exact(&mut b).unwrap();
                    c.write_all(&[b[0] + 1]).unwrap();
                })]
            },
        );
        for i in 0..3u8 {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.write_all(&[i]).unwrap();
            let mut b = [0u8; 1];
            c.read_exact(&mut b).unwrap();
            assert_eq!(b[0], i + 1, "connection {i} was served");
        }
        stop.store(true, Ordering::SeqCst);
        acceptor.join().unwrap();
        let e = TcpStream::connect(("127.0.0.1", port)).expect_err("the listener is closed");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    }
}
