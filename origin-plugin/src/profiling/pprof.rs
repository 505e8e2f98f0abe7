//! On-demand CPU profiles with `pprof`: `GET /debug/pprof/profile?seconds=N&format=svg|pprof`
//! samples every thread for N seconds (bounded) and answers a flamegraph SVG or a gzip-free
//! pprof protobuf. One profile at a time per process (the sampler is process-wide); a
//! second caller gets 409.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue};

use super::query_param;
use crate::Error;

/// Output format of a CPU profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileFormat {
    /// Flamegraph SVG (`image/svg+xml`).
    Svg,
    /// pprof protobuf (`application/octet-stream`), for `go tool pprof`.
    Pprof,
}

impl ProfileFormat {
    /// Query value for this format.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileFormat::Svg => "svg",
            ProfileFormat::Pprof => "pprof",
        }
    }
}

/// `pprof` samples the whole process through one SIGPROF timer, so only one profile may
/// run per process, whichever `Profiler` asked for it.
static BUSY: AtomicBool = AtomicBool::new(false);

/// The CPU profiler behind the endpoint: frequency and bound.
#[derive(Debug, Clone)]
pub(crate) struct CpuProfiler {
    frequency: i32,
    max_seconds: u64,
}

/// Releases [`BUSY`] when the profile ends, however it ends.
struct Busy;
impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.store(false, Ordering::Release);
    }
}

impl CpuProfiler {
    pub(crate) fn new(frequency: i32, max_seconds: u64) -> Self {
        Self {
            frequency: frequency.clamp(1, 1000),
            max_seconds,
        }
    }

    fn parse(&self, query: Option<&str>) -> Result<(Duration, ProfileFormat), Error> {
        let seconds = match query_param(query, "seconds") {
            None => 10.min(self.max_seconds),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|s| (1..=self.max_seconds).contains(s))
                .ok_or_else(|| {
                    Error::BadRequest(format!(
                        "seconds must be an integer from 1 to {}",
                        self.max_seconds
                    ))
                })?,
        };
        let format = match query_param(query, "format") {
            None | Some("svg") => ProfileFormat::Svg,
            Some("pprof") | Some("proto") => ProfileFormat::Pprof,
            Some(other) => {
                return Err(Error::BadRequest(format!(
                    "unknown format {other:?}; use svg or pprof"
                )))
            }
        };
        Ok((Duration::from_secs(seconds), format))
    }

    pub(crate) async fn serve(&self, query: Option<&str>) -> Response {
        match self.profile(query).await {
            Ok(res) => res,
            Err(e) => e.into_response(),
        }
    }

    async fn profile(&self, query: Option<&str>) -> Result<Response, Error> {
        let (duration, format) = self.parse(query)?;
        if BUSY.swap(true, Ordering::AcqRel) {
            return Err(Error::Conflict(
                "a CPU profile is already running".to_owned(),
            ));
        }
        let busy = Busy;
        let frequency = self.frequency;
        let bytes = tokio::task::spawn_blocking(move || {
            let _busy = busy;
            capture(duration, frequency, format)
        })
        .await
        .map_err(|e| Error::Internal(format!("profiler task failed: {e}")))??;
        let content_type = match format {
            ProfileFormat::Svg => "image/svg+xml",
            ProfileFormat::Pprof => "application/octet-stream",
        };
        let mut res = bytes.into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if format == ProfileFormat::Pprof {
            res.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"cpu.pb\""),
            );
        }
        Ok(res)
    }
}

fn capture(duration: Duration, frequency: i32, format: ProfileFormat) -> Result<Vec<u8>, Error> {
    let guard = ::pprof::ProfilerGuardBuilder::default()
        .frequency(frequency)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| Error::Internal(format!("cannot start profiler: {e}")))?;
    std::thread::sleep(duration);
    let report = guard
        .report()
        .build()
        .map_err(|e| Error::Internal(format!("cannot build profile: {e}")))?;
    drop(guard);
    match format {
        ProfileFormat::Svg => {
            if report.data.is_empty() {
                return Ok(empty_svg(duration).into_bytes());
            }
            let mut svg = Vec::new();
            report
                .flamegraph(&mut svg)
                .map_err(|e| Error::Internal(format!("cannot render flamegraph: {e}")))?;
            Ok(svg)
        }
        ProfileFormat::Pprof => {
            use ::pprof::protos::Message;
            let profile = report
                .pprof()
                .map_err(|e| Error::Internal(format!("cannot encode profile: {e}")))?;
            Ok(profile.encode_to_vec())
        }
    }
}

/// A process that was idle for the whole window has no stacks; say so in a valid SVG.
fn empty_svg(duration: Duration) -> String {
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"60\" viewBox=\"0 0 600 60\">\
<text x=\"10\" y=\"35\" font-family=\"sans-serif\" font-size=\"14\">No CPU samples in {} s: the process was idle.</text></svg>\n",
        duration.as_secs()
    )
}
