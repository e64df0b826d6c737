//! Writes every CRD to `crds/<plural>.yaml` (or to the directory given as the argument).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR")).to_string());
    for (file, crd) in automq_crds::all() {
        std::fs::write(std::path::Path::new(&dir).join(file), automq_crds::to_yaml(&crd)?)?;
    }
    Ok(())
}
