//! A real S3-compatible server for tests: `moto_server` from PyPI (`pip install 'moto[server]'`,
//! which `ci/test` does), started on a free loopback port and stopped on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running moto server with one bucket.
pub struct Moto {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub bucket: String,
    child: Child,
}

impl Moto {
    /// Starts moto and creates `bucket`. Panics with how to install moto when it is missing.
    pub async fn start(bucket: &str) -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let spawn = |program: &str, prefix: &[&str]| {
            Command::new(program)
                .args(prefix)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        };
        let child =
            spawn("moto_server", &[]).or_else(|_| spawn("python3", &["-m", "moto.server"])).unwrap_or_else(|e| {
                panic!("cannot start moto ({e}); install it with: python3 -m pip install 'moto[server]'")
            });
        let mut moto = Moto { endpoint: format!("http://127.0.0.1:{port}"), bucket: bucket.to_owned(), child };
        let http = reqwest::Client::new();
        let deadline = crate::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto exited at start ({status}); is 'moto[server]' installed? python3 -m pip install 'moto[server]'");
            }
            if http.get(&moto.endpoint).send().await.is_ok() {
                break;
            }
            assert!(crate::now() < deadline, "moto did not answer on {} within 30 s", moto.endpoint);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let created = http.put(format!("{}/{bucket}", moto.endpoint)).send().await.expect("create the bucket");
        assert!(created.status().is_success(), "create bucket {bucket}: {}", created.status());
        moto.bucket = bucket.to_owned();
        moto
    }

    /// The storage URL and `AWS_*` settings that reach this server.
    pub fn storage(&self) -> (String, Vec<(String, String)>) {
        let settings = [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
        ];
        (format!("s3://{}", self.bucket), settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
