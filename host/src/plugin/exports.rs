//! Which gale world a compiled component implements, read from its exports
//! (not found by trying to instantiate it as each world in turn): a plugin
//! exports exactly one of the hook interfaces `header-hooks`, `cache-hooks`
//! and `upload-hooks`, plus the optional interfaces of that world's
//! variants (`header-interest`, `hook-inputs`, `cache-inputs`).

use wasmtime::Engine;
use wasmtime::component::Component;

/// The WIT package every gale interface belongs to.
const PACKAGE: &str = "gale:plugin/";

/// The three worlds a plugin can implement, by their hook interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldKind {
    Header,
    Cache,
    UploadFields,
}

impl WorldKind {
    const ALL: [WorldKind; 3] = [WorldKind::Header, WorldKind::Cache, WorldKind::UploadFields];

    /// The world's name, as in `wit/`.
    pub fn name(self) -> &'static str {
        match self {
            WorldKind::Header => "header-policy",
            WorldKind::Cache => "cache-policy",
            WorldKind::UploadFields => "upload-fields",
        }
    }

    /// The interface whose export makes a component this world's.
    fn hooks(self) -> &'static str {
        match self {
            WorldKind::Header => "header-hooks",
            WorldKind::Cache => "cache-hooks",
            WorldKind::UploadFields => "upload-hooks",
        }
    }

    /// Optional interfaces of the world's variants, with the variant each
    /// one makes (the last one present names the variant).
    fn variants(self) -> &'static [(&'static str, &'static str)] {
        match self {
            WorldKind::Header => {
                &[("header-interest", "selective-header-policy"), ("hook-inputs", "memoizable-header-policy")]
            }
            WorldKind::Cache => &[("cache-inputs", "memoizable-cache-policy")],
            WorldKind::UploadFields => &[],
        }
    }
}

/// What a component exports, as far as gale is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exports {
    pub kind: WorldKind,
    /// The exact world it was built for, e.g. `memoizable-header-policy`.
    pub variant: &'static str,
    /// Every export's name, as the component spells it.
    pub names: Vec<String>,
}

/// The world `component` implements; `Err` says why it is not exactly one
/// gale world, in words for the plugin's author.
pub fn world_of(engine: &Engine, component: &Component) -> Result<Exports, String> {
    let mut names: Vec<String> = component.component_type().exports(engine).map(|(name, _)| name.to_owned()).collect();
    // In a stable order for messages: the component's own order is the
    // toolchain's.
    names.sort();
    from_names(names)
}

/// [`world_of`] on the export names alone.
fn from_names(names: Vec<String>) -> Result<Exports, String> {
    let has = |interface: &str| names.iter().any(|n| interface_of(n) == Some(interface));
    let found: Vec<WorldKind> = WorldKind::ALL.into_iter().filter(|w| has(w.hooks())).collect();
    match found.as_slice() {
        [kind] => {
            let variant = kind.variants().iter().rev().find(|(i, _)| has(i)).map_or(kind.name(), |(_, v)| *v);
            Ok(Exports { kind: *kind, variant, names })
        }
        [] => {
            let listed = if names.is_empty() { "nothing".to_owned() } else { quoted(&names) };
            Err(format!(
                "it exports none of gale's hook interfaces (`gale:plugin/header-hooks`, `cache-hooks` or \
                 `upload-hooks`); it exports {listed}. Build it against one of the worlds header-policy, \
                 cache-policy or upload-fields (the gale-plugin SDK's macros do)"
            ))
        }
        several => {
            let worlds: Vec<String> = several.iter().map(|w| format!("{} ({})", w.name(), w.hooks())).collect();
            Err(format!(
                "it exports the hooks of several worlds: {}; a plugin implements exactly one world \
                 (make one crate per world)",
                worlds.join(", ")
            ))
        }
    }
}

/// `header-hooks` for `gale:plugin/header-hooks@0.1.0`; `None` for another
/// package's export.
fn interface_of(export: &str) -> Option<&str> {
    let rest = export.strip_prefix(PACKAGE)?;
    Some(rest.split_once('@').map_or(rest, |(name, _)| name))
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_hook_interface_names_the_world_and_the_optional_ones_its_variant() {
        let cases = [
            (&["gale:plugin/header-hooks@0.1.0"][..], WorldKind::Header, "header-policy"),
            (
                &["gale:plugin/header-hooks@0.1.0", "gale:plugin/header-interest@0.1.0"][..],
                WorldKind::Header,
                "selective-header-policy",
            ),
            (
                &[
                    "gale:plugin/header-hooks@0.1.0",
                    "gale:plugin/header-interest@0.1.0",
                    "gale:plugin/hook-inputs@0.1.0",
                ][..],
                WorldKind::Header,
                "memoizable-header-policy",
            ),
            (&["gale:plugin/cache-hooks@0.1.0"][..], WorldKind::Cache, "cache-policy"),
            (
                &["gale:plugin/cache-hooks@0.1.0", "gale:plugin/cache-inputs@0.1.0"][..],
                WorldKind::Cache,
                "memoizable-cache-policy",
            ),
            (&["gale:plugin/upload-hooks"][..], WorldKind::UploadFields, "upload-fields"),
        ];
        for (exports, kind, variant) in cases {
            let found = from_names(names(exports)).expect("one world");
            assert_eq!((found.kind, found.variant), (kind, variant), "{exports:?}");
        }
    }

    #[test]
    fn none_or_several_worlds_are_refused_saying_which() {
        let e = from_names(Vec::new()).expect_err("none");
        assert!(e.contains("exports nothing"), "{e}");
        let e = from_names(names(&["wasi:http/incoming-handler@0.2.0"])).expect_err("another package");
        assert!(e.contains("`wasi:http/incoming-handler@0.2.0`"), "{e}");
        // An interface of another package with a gale-like name is not one.
        let e = from_names(names(&["my:plugin/header-hooks@0.1.0"])).expect_err("not gale's");
        assert!(e.contains("none of gale's hook interfaces"), "{e}");
        let e =
            from_names(names(&["gale:plugin/header-hooks@0.1.0", "gale:plugin/cache-hooks@0.1.0"])).expect_err("two");
        assert!(e.contains("header-policy (header-hooks), cache-policy (cache-hooks)"), "{e}");
        assert!(e.contains("exactly one world"), "{e}");
    }
}
