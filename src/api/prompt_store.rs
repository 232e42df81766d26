//! A folder of schema prompts the model has read (`anote --prompt-cache DIR`, Python's
//! `prompt_cache=`): a process that extracts with a schema a run before it read reads the
//! prompt's keys and values from a file instead of from the model, as the page does
//! from OPFS. One file per schema, model, adapter and engine build, named by
//! [`Extractor::prompt_key`]; nothing of the texts is in it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::ner::extract::Extractor;
use crate::ner::schema::Schema;

pub struct PromptStore {
    dir: PathBuf,
}

impl PromptStore {
    pub fn new(dir: impl Into<PathBuf>) -> PromptStore {
        PromptStore { dir: dir.into() }
    }

    /// Reads `schema`'s prompt into `x`: nothing to do where `x` holds it already, else
    /// from the folder's copy where it holds one for this schema, model, adapter and
    /// engine build, else from the model, and then keeps a copy. The WebGPU backend keeps
    /// its cache on the GPU: nothing is stored for it. A copy that cannot be read or
    /// written costs only the time it would have saved: `note` is told why, and the
    /// answer is the same.
    pub async fn prepare(&self, x: &mut Extractor, schema: &Schema, note: &mut dyn FnMut(String)) -> Result<()> {
        if x.is_prepared(schema) {
            return Ok(());
        }
        let Some(key) = x.prompt_key(schema)? else {
            return Ok(());
        };
        let path = self.dir.join(format!("{key}.prompt"));
        if let Ok(file) = std::fs::File::open(&path) {
            match x.load_prepared(schema, &file) {
                Ok(_) => return Ok(()),
                Err(e) => note(format!("{}: {e}; reading the prompt from the model", path.display())),
            }
        }
        x.prepare(schema).await?;
        if let Err(e) = self.keep(x, schema, &path) {
            note(format!("the prompt was not kept in {}: {e}", self.dir.display()));
        }
        Ok(())
    }

    /// Writes `schema`'s prepared prompt to `path`: aside first, then renamed into place,
    /// so that a process stopped half way, or two at once, never leave a partial copy under
    /// the name a run reads (the loader would refuse one by its size, at a cost).
    fn keep(&self, x: &Extractor, schema: &Schema, path: &Path) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let aside = path.with_extension(format!("{}.part", std::process::id()));
        let written = write(x, schema, &aside).and_then(|()| std::fs::rename(&aside, path).map_err(Error::from));
        if written.is_err() {
            let _ = std::fs::remove_file(&aside);
        }
        written
    }
}

fn write(x: &Extractor, schema: &Schema, to: &Path) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(to)?);
    x.save_prepared(schema, &mut |piece| out.write_all(piece).map_err(Error::from))?;
    Ok(out.flush()?)
}
