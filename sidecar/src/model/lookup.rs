//! Which host a reserved resource names: the label-or-name rule and the DNS-1123 mapping,
//! and the name of a host's userData Secret.

/// The DNS-1123 form of a resource name: "Lab Server A1" → "lab-server-a1".
pub fn dns1123(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches(|c| c == '-' || c == '.');
    trimmed
        .chars()
        .take(253)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_owned()
}

/// The rule mapping a reserved resource to its host, one place for the watch-cache path and
/// the API path: the one host labelled with the resourceId (`BMH_RESOURCE_ID_LABEL`); with none,
/// or several (a warning), the host named after the resourceName ([`dns1123`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostLookup<T> {
    /// Exactly one host carries the label.
    Labelled(T),
    /// Look the host up by this name (`None` when the name maps to nothing); `ambiguous` when
    /// several hosts carry the label.
    ByName {
        name: Option<String>,
        ambiguous: bool,
    },
}

impl<T> HostLookup<T> {
    /// Decides from the hosts labelled with the resource's id.
    pub fn from_labelled(mut labelled: Vec<T>, resource_name: &str) -> Self {
        if labelled.len() == 1
            && let Some(one) = labelled.pop()
        {
            return HostLookup::Labelled(one);
        }
        let name = dns1123(resource_name);
        HostLookup::ByName {
            name: (!name.is_empty()).then_some(name),
            ambiguous: labelled.len() > 1,
        }
    }
}

/// The name of the userData Secret of host `bmh`.
pub fn secret_name(bmh: &str) -> String {
    format!("{bmh}-userdata")
}
