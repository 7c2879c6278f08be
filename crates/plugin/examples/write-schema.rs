//! Writes `protocol.schema.json`, the JSON Schema of the plugin protocol, from the Rust types.

fn main() -> std::io::Result<()> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol.schema.json");
    std::fs::write(path, creddy_plugin::protocol::json_schema())?;
    println!("wrote {path}");
    Ok(())
}
