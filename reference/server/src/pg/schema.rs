//! The schema cache: the functions and relations of `public` that the API exposes, read from the
//! catalog at start-up, as PostgREST keeps one.

use std::collections::BTreeMap;
use tokio_postgres::GenericClient;

/// How a function's result becomes a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnKind {
    /// `void`: 204 No Content.
    Void,
    /// A scalar (including `json`/`jsonb`): the value itself.
    Scalar,
    /// One composite row: a JSON object.
    Row,
    /// `SETOF` or `TABLE`: a JSON array.
    Set,
}

/// One overload of an exposed function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    /// Input argument names and their SQL types, in declaration order.
    pub args: Vec<(String, String)>,
    /// How many trailing arguments have defaults.
    pub defaults: usize,
    pub returns: ReturnKind,
}

impl Function {
    /// Whether a call naming exactly `given` arguments fits this overload: every given name is an
    /// argument, and every argument without a default is given.
    pub fn accepts<'a>(&self, given: impl IntoIterator<Item = &'a str> + Clone) -> bool {
        let known = |name: &str| self.args.iter().any(|(arg, _)| arg == name);
        let required = &self.args[..self.args.len().saturating_sub(self.defaults)];
        given.clone().into_iter().all(known)
            && required.iter().all(|(arg, _)| given.clone().into_iter().any(|g| g == arg))
    }

    pub fn signature(&self) -> String {
        let names: Vec<&str> = self.args.iter().map(|(n, _)| n.as_str()).collect();
        format!("public.{}({})", self.name, names.join(", "))
    }
}

/// The exposed schema: functions by name (with overloads) and relations with their columns.
#[derive(Debug, Clone, Default)]
pub struct SchemaCache {
    pub functions: BTreeMap<String, Vec<Function>>,
    /// Relation name → (column name, SQL type) in column order.
    pub relations: BTreeMap<String, Vec<(String, String)>>,
}

impl SchemaCache {
    /// Reads the cache from the catalog.
    pub async fn load(client: &impl GenericClient) -> Result<SchemaCache, tokio_postgres::Error> {
        let mut cache = SchemaCache::default();
        let rows = client
            .query(
                "SELECT p.proname::text,
                        coalesce(p.proargnames, '{}'::text[]),
                        coalesce(p.proargmodes::text[], '{}'::text[]),
                        array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS x(t, o) ORDER BY o),
                        p.pronargdefaults::int4,
                        p.proretset,
                        rt.typtype::text,
                        rt.typname::text
                 FROM pg_proc p
                 JOIN pg_namespace n ON n.oid = p.pronamespace
                 JOIN pg_type rt ON rt.oid = p.prorettype
                 WHERE n.nspname = 'public' AND p.prokind = 'f'
                 ORDER BY p.proname, p.oid",
                &[],
            )
            .await?;
        for row in rows {
            let name: String = row.get(0);
            let arg_names: Vec<String> = row.get(1);
            let arg_modes: Vec<String> = row.get(2);
            let arg_types: Vec<String> = row.get(3);
            let defaults: i32 = row.get(4);
            let retset: bool = row.get(5);
            let typtype: String = row.get(6);
            let typname: String = row.get(7);

            // proargnames covers IN and OUT arguments alike; proargtypes only the inputs.
            let input_names: Vec<String> = if arg_modes.is_empty() {
                arg_names
            } else {
                arg_names
                    .into_iter()
                    .zip(arg_modes)
                    .filter(|(_, mode)| matches!(mode.as_str(), "i" | "b" | "v"))
                    .map(|(name, _)| name)
                    .collect()
            };
            if input_names.len() != arg_types.len() || input_names.iter().any(String::is_empty) {
                continue; // unnamed arguments cannot be called by name
            }
            let returns = if retset {
                ReturnKind::Set
            } else if typname == "void" {
                ReturnKind::Void
            } else if typtype == "c" || typname == "record" {
                ReturnKind::Row
            } else {
                ReturnKind::Scalar
            };
            cache.functions.entry(name.clone()).or_default().push(Function {
                name,
                args: input_names.into_iter().zip(arg_types).collect(),
                defaults: defaults.max(0) as usize,
                returns,
            });
        }

        let rows = client
            .query(
                "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod)
                 FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_attribute a ON a.attrelid = c.oid
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
                   AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY c.relname, a.attnum",
                &[],
            )
            .await?;
        for row in rows {
            cache.relations.entry(row.get(0)).or_default().push((row.get(1), row.get(2)));
        }
        Ok(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_matching_by_argument_names() {
        let f = Function {
            name: "upsert_project_file".into(),
            args: ["project_uuid", "p_file_path", "p_content", "p_file_type", "expected_version"]
                .iter()
                .map(|n| (n.to_string(), "text".to_string()))
                .collect(),
            defaults: 1,
            returns: ReturnKind::Scalar,
        };
        let all = ["project_uuid", "p_file_path", "p_content", "p_file_type", "expected_version"];
        assert!(f.accepts(all));
        assert!(f.accepts(all[..4].iter().copied()));
        assert!(!f.accepts(all[..3].iter().copied()), "a required argument is missing");
        assert!(!f.accepts(["project_uuid", "p_file_path", "p_content", "p_file_type", "bogus"]));
    }
}
