//! Log lines of a traced run carry the run's trace ids: the scheduler runs
//! it inside a `run` span whose `trace_id` / `span_id` are the exported
//! trace's, so JSON logs (`--log-format json`) show them under `span`.

#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use outpost_probe::config::RawProbeFile;
use outpost_testkit::{HttpServer, OtlpReceiver, Reply, wait::eventually};

/// Log output shared with the test.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// Current-thread runtime: the thread's default subscriber sees every task.
#[tokio::test]
async fn json_log_lines_inside_a_traced_run_carry_its_trace_and_span_ids() {
    let logs = Buffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter("outpost_probe::scheduler=debug")
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let receiver = OtlpReceiver::start().await.unwrap();
    let srv = HttpServer::builder()
        .route("/broken", Reply::text(500, "no"))
        .run()
        .await
        .unwrap();
    let text = format!(
        "[telemetry]\notlp_endpoint = \"{}\"\nsampling = \"always\"\nbatch_delay = \"50ms\"\n\
         [[checks]]\nid = \"logged\"\ninterval = \"1s\"\nhttp = {{ url = \"{}\" }}\n",
        receiver.endpoint(),
        srv.url("/broken")
    );
    let raw: RawProbeFile = toml::from_str(&text).unwrap();
    let probe =
        outpost_probe::spawn(raw.validate("test").unwrap(), Some(Arc::new(|_| {}))).unwrap();
    let root = eventually("an exported run", Duration::from_secs(20), || async {
        receiver.roots().into_iter().next()
    })
    .await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["fields"]["message"] == "check run finished")
        .unwrap_or_else(|| panic!("no run log line in {text}"));
    assert_eq!(line["fields"]["failure_code"], "unexpected_status");
    assert_eq!(line["span"]["name"], "run");
    assert_eq!(line["span"]["check"], "logged");
    assert_eq!(line["span"]["trace_id"], root.trace_id.as_str(), "{line}");
    assert_eq!(line["span"]["span_id"], root.span_id.as_str(), "{line}");
    probe.shutdown().await;
}
