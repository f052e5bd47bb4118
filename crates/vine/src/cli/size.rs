//! Parsing sizes given on the command line: `512K`, `10M`, `2G`, `1T`, `4KiB`, `1.5G`, `4096B`.
//! A bare number means MiB for memory ([`parse_memory`]) and GiB for disks ([`parse_disk_size`]),
//! as in Proxmox and `qemu-img`'s habits; bytes only where a size is naturally small (block
//! sizes, [`parse_size`]).

/// Parses a size; binary units (K = 1024); a bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    parse_with(text, 1)
}

/// Parses a memory size; a bare number is MiB (`256` = 256 MiB, like the web form's field).
pub fn parse_memory(text: &str) -> Result<u64, String> {
    parse_with(text, 1 << 20)
}

/// Parses a disk size; a bare number is GiB (`20` = 20 GiB).
pub fn parse_disk_size(text: &str) -> Result<u64, String> {
    parse_with(text, 1 << 30)
}

fn parse_with(text: &str, bare: u64) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("size {text:?} does not start with a number (examples: 512M, 10G, 4096B)"));
    }
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" => bare,
        "b" => 1,
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
    fn bare_numbers_are_mib_of_memory_and_gib_of_disk() {
        assert_eq!(parse_memory("256").unwrap(), 256 << 20);
        assert_eq!(parse_memory("1.5").unwrap(), 3 << 19);
        assert_eq!(parse_memory("2G").unwrap(), 2 << 30);
        assert_eq!(parse_memory("268435456B").unwrap(), 256 << 20);
        assert_eq!(parse_disk_size("20").unwrap(), 20 << 30);
        assert_eq!(parse_disk_size("512M").unwrap(), 512 << 20);
        assert!(parse_memory("16777216T").unwrap_err().contains("too large"));
        assert!(parse_disk_size("99999999999").unwrap_err().contains("too large"));
    }

    #[test]
    fn bad_sizes_name_the_problem() {
        assert!(parse_size("ten").unwrap_err().contains("does not start with a number"));
        assert!(parse_size("10X").unwrap_err().contains("unknown unit"));
        assert!(parse_size("99999999999999999999T").unwrap_err().contains("not a whole number"));
        assert!(parse_size("16777216T").unwrap_err().contains("too large"));
    }
}
