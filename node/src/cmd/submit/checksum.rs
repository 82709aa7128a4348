//! `rendermesh submit checksum FILE… [--rounds N] [--json OUT]`: the checksum kind from the
//! command line. Prints `digest  file` per input and the combined digest.

use rendermesh_protocol::JobResult;

use super::{execute, input_path, write_atomic};
use crate::cli::ChecksumArgs;
use crate::config::NodeConfig;
use crate::engine::concat::check_output;
use crate::jobs::checksum::{Checksum, Params};
use crate::jobs::kind::{JobKind, SubmitRequest};

pub(super) fn run(cfg: NodeConfig, a: ChecksumArgs) -> anyhow::Result<i32> {
    let inputs = a
        .inputs
        .iter()
        .map(|p| input_path(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(out) = &a.json {
        check_output(out)?;
    }
    let params = Params {
        inputs: inputs.clone(),
        rounds: a.rounds,
    };
    let req = SubmitRequest::new(Checksum.name(), &params)?;
    let (status, result, _done) = execute(&cfg, req, &a.common)?;
    let JobResult::Checksum { parts, combined } = result else {
        anyhow::bail!("node answered a checksum job with another kind of result");
    };
    for (input, digest) in inputs.iter().zip(&parts) {
        println!("{digest}  {}", input.display());
    }
    println!("{combined}  (combined, {} rounds)", a.rounds);
    if let Some(out) = &a.json {
        let doc = serde_json::json!({
            "rounds": a.rounds,
            "files": inputs
                .iter()
                .zip(&parts)
                .map(|(f, d)| serde_json::json!({"file": f, "digest": d.to_string()}))
                .collect::<Vec<_>>(),
            "combined": combined.to_string(),
            "shards": status.shards.len(),
        });
        write_atomic(out, serde_json::to_vec_pretty(&doc)?.as_slice())?;
    }
    Ok(0)
}
