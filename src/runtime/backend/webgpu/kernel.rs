//! What a WGSL kernel is to the host: its source, the numbers it shares with the host and
//! the type of its parameters.

/// A WGSL kernel.
pub trait Kernel {
    /// The WGSL file's name, for labels and reports.
    const NAME: &'static str;
    const SOURCE: &'static str;
    /// Numbers the kernel and its dispatch both rely on (workgroup size, tile sizes): set
    /// here, declared as WGSL `const`s ahead of the source. Not `override`s: WGSL sizes a
    /// function's arrays only with `const`s.
    const CONSTANTS: &'static [(&'static str, u32)];
    /// The kernel's `Params` uniform.
    type Params: bytemuck::Pod;
}

/// What compiling a kernel needs.
pub struct KernelSource {
    pub name: &'static str,
    source: &'static str,
    constants: &'static [(&'static str, u32)],
}

impl KernelSource {
    pub const fn of<K: Kernel>() -> KernelSource {
        KernelSource {
            name: K::NAME,
            source: K::SOURCE,
            constants: K::CONSTANTS,
        }
    }

    /// The WGSL to compile: the shared constants, then the file.
    pub fn wgsl(&self) -> String {
        let mut wgsl: String = self
            .constants
            .iter()
            .map(|(name, v)| format!("const {name}: u32 = {v}u;\n"))
            .collect();
        wgsl.push_str(self.source);
        wgsl
    }
}
