//! Parsing sizes given on the command line: `1048576`, `512K`, `10M`, `2G`, `1T`, `4KiB`, `1.5G`.

/// Parses a size; binary units (K = 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("size {text:?} does not start with a number (examples: 512M, 10G, 1048576)"));
    }
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("size {text:?} has an unknown unit {other:?} (use K, M, G or T)")),
    };
    let value = if num.contains('.') {
        let f: f64 = num.parse().map_err(|_| format!("size {text:?} is not a number"))?;
        let v = f * mult as f64;
        if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
            return Err(format!("size {text:?} is out of range"));
        }
        v.round() as u64
    } else {
        let n: u64 = num.parse().map_err(|_| format!("size {text:?} is not a whole number"))?;
        n.checked_mul(mult).ok_or_else(|| format!("size {text:?} is too large"))?
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units_parse() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("512K").unwrap(), 512 << 10);
        assert_eq!(parse_size("2M").unwrap(), 2 << 20);
        assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
    }

    #[test]
    fn bad_sizes_name_the_problem() {
        assert!(parse_size("ten").unwrap_err().contains("does not start with a number"));
        assert!(parse_size("10X").unwrap_err().contains("unknown unit"));
        assert!(parse_size("99999999999999999999T").unwrap_err().contains("not a whole number"));
        assert!(parse_size("16777216T").unwrap_err().contains("too large"));
    }
}
