//! The platform's limits: every default of DESIGN.md defined once.

/// Defaults and caps; the server may lower or raise the caps.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Default call timeout.
    pub timeout_ms: u64,
    /// Largest timeout a function may ask for.
    pub max_timeout_ms: u64,
    /// Default memory per instance.
    pub memory_mb: u64,
    /// Largest memory a function may ask for.
    pub max_memory_mb: u64,
    /// Default concurrent calls per function.
    pub concurrency: u64,
    /// Largest concurrency a function may ask for.
    pub max_concurrency: u64,
    /// Request and response body limit.
    pub body_bytes: usize,
    /// Logs kept per invocation.
    pub log_bytes: usize,
    /// Deployment size, unpacked.
    pub deployment_bytes: usize,
    /// Files per deployment.
    pub deployment_files: usize,
    /// Default CPU per instance, in thousandths of a core.
    pub cpu_millicores: u64,
    /// Most CPU a function may ask for.
    pub max_cpu_millicores: u64,
    /// Default processes and threads per instance.
    pub pids: u64,
    /// Most processes and threads a function may ask for.
    pub max_pids: u64,
    /// Open descriptors per instance.
    pub open_files: u64,
    /// Default size of /tmp per instance.
    pub tmp_bytes: u64,
    /// Largest /tmp a function may ask for.
    pub max_tmp_bytes: u64,
    /// Environment variables per project.
    pub env_vars: usize,
    /// One variable's value.
    pub env_value_bytes: usize,
    /// All of a project's names and values together.
    pub env_total_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: 30_000,
            max_timeout_ms: 900_000,
            memory_mb: 128,
            max_memory_mb: 4096,
            concurrency: 10,
            max_concurrency: 100,
            body_bytes: 6 * 1024 * 1024,
            log_bytes: 256 * 1024,
            deployment_bytes: 50 * 1024 * 1024,
            deployment_files: 1000,
            cpu_millicores: 1000,
            max_cpu_millicores: 4000,
            pids: 128,
            max_pids: 1024,
            open_files: 1024,
            tmp_bytes: 64 * 1024 * 1024,
            max_tmp_bytes: 1024 * 1024 * 1024,
            env_vars: 100,
            env_value_bytes: 16 * 1024,
            env_total_bytes: 32 * 1024,
        }
    }
}

/// One function setting's allowed values, as the server checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingRange {
    /// The field's name in [`FunctionSettings`](crate::FunctionSettings).
    pub name: &'static str,
    pub min: u64,
    pub max: u64,
    /// What a new function gets when the field is absent.
    pub default: u64,
}

impl Limits {
    /// The range of each numeric function setting under these caps: what
    /// the server accepts, and what its API document says.
    pub fn setting_ranges(&self) -> [SettingRange; 6] {
        const MIB: u64 = 1024 * 1024;
        let range = |name, min, max, default| SettingRange {
            name,
            min,
            max,
            default,
        };
        [
            range("timeout_ms", 100, self.max_timeout_ms, self.timeout_ms),
            range("memory_mb", 16, self.max_memory_mb, self.memory_mb),
            range("concurrency", 1, self.max_concurrency, self.concurrency),
            range(
                "cpu_millicores",
                10,
                self.max_cpu_millicores,
                self.cpu_millicores,
            ),
            range("pids", 8, self.max_pids, self.pids),
            range("tmp_mb", 1, self.max_tmp_bytes / MIB, self.tmp_bytes / MIB),
        ]
    }

    /// The range of the setting `name`.
    pub fn setting_range(&self, name: &str) -> Option<SettingRange> {
        self.setting_ranges().into_iter().find(|r| r.name == name)
    }
}

/// How deeply an event or an output may nest arrays and objects. Both
/// runners and the host's JSON reader (which gives up at 128) handle this
/// depth, with room for the envelopes the value travels in.
pub const MAX_JSON_DEPTH: usize = 100;

/// Whether the JSON text `json` nests arrays and objects more than `max`
/// levels deep. A scan of the bytes, without parsing: brackets inside
/// strings are skipped; the text is assumed to be JSON (checked elsewhere).
pub fn json_nested_deeper_than(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_scan_counts_brackets_outside_strings() {
        let nested = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert!(!json_nested_deeper_than(nested(100).as_bytes(), 100));
        assert!(json_nested_deeper_than(nested(101).as_bytes(), 100));
        assert!(!json_nested_deeper_than(b"1", 0));
        assert!(json_nested_deeper_than(b"{}", 0));
        // Brackets in strings, escaped quotes included, do not count.
        let text = format!(r#"{{"a": "{}\"[[[", "b": [{{}}]}}"#, "[".repeat(500));
        assert!(!json_nested_deeper_than(text.as_bytes(), 3));
        assert!(json_nested_deeper_than(text.as_bytes(), 2));
        // Siblings do not add up.
        assert!(!json_nested_deeper_than(b"[[1],[2],[3],{\"a\":{}}]", 3));
        assert!(json_nested_deeper_than(b"[[1],[2],[3],{\"a\":{}}]", 2));
    }
}
