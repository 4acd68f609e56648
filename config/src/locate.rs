//! Source positions for semantic errors.
//!
//! `yaml_serde` keeps no spans in its values, but it does stamp every error raised by a
//! `Deserialize` impl with the position (libyaml mark) of the node being deserialized. So to
//! find where `dialplan[3].route[1]` is, we deserialize the source a second time with a seed
//! that walks that path, ignores everything else, and fails on purpose at the target node; the
//! error it gets back carries the node's line and column. This runs only when there is an
//! error to report, so loading a good file pays nothing for it.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a path into the YAML document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    /// The value under this mapping key.
    Key(String),
    /// The mapping key itself (to point at a trunk's name, say).
    KeyItself(String),
    /// The n-th element of a sequence.
    Index(usize),
}

/// Path builder shorthand.
pub(crate) fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

const SENTINEL: &str = "\u{1}trunkline-locate\u{1}";

/// 1-based (line, column) of the node at `path` in `src`, or of the deepest existing ancestor.
pub(crate) fn locate(src: &str, path: &[Seg]) -> Option<(usize, usize)> {
    for n in (0..=path.len()).rev() {
        let seed = Walk { path: &path[..n] };
        match seed.deserialize(yaml_serde::Deserializer::from_str(src)) {
            Ok(()) => continue,
            Err(e) => {
                if e.to_string().contains(SENTINEL) {
                    if let Some(loc) = e.location() {
                        return Some((loc.line(), loc.column()));
                    }
                }
                continue;
            }
        }
    }
    None
}

struct Walk<'p> {
    path: &'p [Seg],
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

macro_rules! hit {
    ($($name:ident: $t:ty),*) => {
        $(fn $name<E: de::Error>(self, _v: $t) -> Result<(), E> {
            if self.path.is_empty() { Err(E::custom(SENTINEL)) } else { Ok(()) }
        })*
    };
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }
    hit!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_i128: i128, visit_u128: u128,
         visit_f64: f64, visit_str: &str, visit_bytes: &[u8]);
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom(SENTINEL))
        } else {
            Ok(())
        }
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(SENTINEL));
        };
        let Seg::Index(want) = first else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let mut i = 0;
        loop {
            if i == *want {
                if seq.next_element_seed(Walk { path: rest })?.is_none() {
                    return Ok(());
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(SENTINEL));
        };
        match first {
            Seg::Key(want) => {
                while let Some(k) = map.next_key::<KeyText>()? {
                    if k.0.as_deref() == Some(want.as_str()) {
                        map.next_value_seed(Walk { path: rest })?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Seg::KeyItself(want) => {
                while map.next_key_seed(KeyHit { want })?.is_some() {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Seg::Index(_) => while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {},
        }
        Ok(())
    }
}

/// A mapping key as text (None for keys that are not scalars).
struct KeyText(Option<String>);

impl<'de> de::Deserialize<'de> for KeyText {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(Some(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<KeyText, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<KeyText, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
        }
        d.deserialize_str(V)
    }
}

/// Key seed that fails (with the key's position) when the key is `want`.
struct KeyHit<'a> {
    want: &'a str,
}

impl<'de> DeserializeSeed<'de> for KeyHit<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyHit<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if v == self.want {
            // raised inside the visitor, so yaml_serde stamps it with the key's position
            Err(E::custom(SENTINEL))
        } else {
            Ok(())
        }
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.visit_str(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        while s.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
}
