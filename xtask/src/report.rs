//! Reports written from templates: the prose lives in `xtask/templates/*.md`, the numbers
//! come from the runs. A template names each value as `{{name}}`.

use anyhow::{bail, Result};

/// `template` with every `{{name}}` replaced by its value; a placeholder without a value,
/// or a value without a placeholder, is an error (a template and its code out of step).
pub fn fill(template: &str, values: &[(&str, String)]) -> Result<String> {
    let mut out = template.to_string();
    for (name, value) in values {
        let placeholder = format!("{{{{{name}}}}}");
        if !out.contains(&placeholder) {
            bail!("the template has no {placeholder}");
        }
        out = out.replace(&placeholder, value);
    }
    if let Some(at) = out.find("{{") {
        let name: String = out[at..].chars().take_while(|&c| c != '}').collect();
        bail!("the template's {name}}}}} has no value");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn fills_every_placeholder_and_refuses_strays() {
        assert_eq!(fill("a {{x}} b {{x}}", &[("x", "1".into())]).unwrap(), "a 1 b 1");
        assert!(fill("a {{x}} {{y}}", &[("x", "1".into())]).is_err());
        assert!(fill("a", &[("x", "1".into())]).is_err());
    }
}
