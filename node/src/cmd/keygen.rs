//! `rendermesh keygen`: print a fresh pre-shared mesh key in the pnet text form.

use rendermesh_mesh::SwarmKey;

pub fn run() -> anyhow::Result<i32> {
    let key = SwarmKey::generate()?;
    print!("{}", key.to_text());
    eprintln!("mesh id {}", key.mesh_id());
    Ok(0)
}
