//! uid → user name, from `/etc/passwd`, read once per scan.

use std::collections::HashMap;
use std::sync::Arc;

/// User names by uid. Unknown uids render as the number.
#[derive(Debug, Clone, Default)]
pub struct Owners {
    names: HashMap<u32, Arc<str>>,
}

impl Owners {
    /// Reads `/etc/passwd`; an unreadable file gives an empty table (numeric owners).
    pub fn from_system() -> Owners {
        std::fs::read("/etc/passwd").map(|b| Owners::parse(&b)).unwrap_or_default()
    }

    /// Parses passwd(5) text: `name:pw:uid:…`. The first name for a uid wins.
    pub fn parse(text: &[u8]) -> Owners {
        let mut names = HashMap::new();
        for line in text.split(|b| *b == b'\n') {
            let mut fields = line.split(|b| *b == b':');
            let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let (Ok(name), Some(uid)) = (
                std::str::from_utf8(name),
                std::str::from_utf8(uid).ok().and_then(|u| u.parse().ok()),
            ) else {
                continue;
            };
            if name.is_empty() || name.starts_with('#') {
                continue;
            }
            names.entry(uid).or_insert_with(|| Arc::from(name));
        }
        Owners { names }
    }

    /// The user name of `uid`, or `uid` as text.
    pub fn name(&self, uid: u32) -> String {
        match self.names.get(&uid) {
            Some(n) => n.to_string(),
            None => uid.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_and_falls_back_to_numbers() {
        let o = Owners::parse(b"root:x:0:0:root:/root:/bin/bash\n#c\nbad\nalice:x:1000:1000::/h:/bin/sh\nalias:x:1000:1:::\n");
        assert_eq!(o.name(0), "root");
        assert_eq!(o.name(1000), "alice");
        assert_eq!(o.name(4242), "4242");
    }
}
