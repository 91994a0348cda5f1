//! The read subset of `GET /rest/v1/{relation}` over the model: the same relations, columns,
//! grants and row level security as the migrations, and the same filter, order and paging
//! semantics as the SQL the server builds.

use crate::state::{Access, Caller, Row, State};
use fsync_store::data::{Filter, FilterOp, ReadOutput, ReadQuery, WRITABLE_RELATION};
use fsync_store::error::ApiError;
use fsync_store::RequestAuth;
use serde_json::{json, Map, Value};
use std::cmp::Ordering;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ty {
    Uuid,
    Text,
    Int,
    Bool,
}

const FILE_COLUMNS: &[(&str, Ty)] = &[
    ("id", Ty::Uuid),
    ("project_id", Ty::Uuid),
    ("file_path", Ty::Text),
    ("file_type", Ty::Text),
    ("content", Ty::Text),
    ("content_hash", Ty::Text),
    ("version", Ty::Int),
    ("parent_version_id", Ty::Uuid),
    ("is_current_version", Ty::Bool),
    ("created_by", Ty::Uuid),
    ("last_modified_by", Ty::Uuid),
    ("created_at", Ty::Text),
    ("updated_at", Ty::Text),
    ("is_deleted", Ty::Bool),
    ("seq", Ty::Int),
    ("size_bytes", Ty::Int),
    ("storage_key", Ty::Text),
];

/// (relation, is a view, columns).
fn relation(name: &str) -> Option<(bool, &'static [(&'static str, Ty)])> {
    match name {
        "project_files" => Some((false, FILE_COLUMNS)),
        "project_files_current" => Some((true, FILE_COLUMNS)),
        WRITABLE_RELATION => Some((
            true,
            &[
                ("id", Ty::Uuid),
                ("project_id", Ty::Uuid),
                ("path", Ty::Text),
                ("type", Ty::Text),
                ("content", Ty::Text),
                ("created_at", Ty::Text),
                ("updated_at", Ty::Text),
            ],
        )),
        "projects" => Some((
            false,
            &[
                ("id", Ty::Uuid),
                ("name", Ty::Text),
                ("owner_id", Ty::Uuid),
                ("seq", Ty::Int),
                ("created_at", Ty::Text),
                ("updated_at", Ty::Text),
            ],
        )),
        "project_members" => Some((
            false,
            &[("project_id", Ty::Uuid), ("user_id", Ty::Uuid), ("role", Ty::Text), ("created_at", Ty::Text)],
        )),
        "user_profiles" => Some((
            false,
            &[("id", Ty::Uuid), ("email", Ty::Text), ("display_name", Ty::Text), ("created_at", Ty::Text)],
        )),
        _ => None,
    }
}

fn error(code: &str, message: String) -> ApiError {
    ApiError::from_sqlstate(code, &message, None, None, true)
}

/// Every row of `name` the caller may see (as JSON objects with every column).
fn visible_rows(state: &State, caller: &Caller, name: &str) -> Vec<Map<String, Value>> {
    let bypass = caller.role == "service_role";
    let reads_files = |p| {
        bypass || matches!(state.access_role(caller, Some(p)), Some(Access::Owner | Access::Editor | Access::Viewer))
    };
    let reads_project = |p| {
        bypass || matches!(state.access_role(caller, Some(p)), Some(Access::Owner | Access::Editor | Access::Viewer))
    };
    let mut rows = Vec::new();
    match name {
        "project_files" | "project_files_current" | WRITABLE_RELATION => {
            for ((project, path), versions) in &state.files {
                if !reads_files(*project) {
                    continue;
                }
                for row in versions {
                    let current = row.id == versions.last().expect("a path has rows").id;
                    if name != "project_files" && (!current || row.deleted) {
                        continue;
                    }
                    let value = if name == WRITABLE_RELATION {
                        legacy_row(*project, path, row)
                    } else {
                        json!({
                            "id": row.id, "project_id": project, "file_path": path, "file_type": row.file_type,
                            "content": row.content, "content_hash": row.content_hash, "version": row.version,
                            "parent_version_id": row.parent, "is_current_version": current, "created_by": row.created_by,
                            "last_modified_by": row.last_modified_by, "created_at": row.updated_at,
                            "updated_at": row.updated_at, "is_deleted": row.deleted, "seq": row.seq,
                            "size_bytes": row.stored.as_ref().map_or(row.content.as_ref().map(|c| c.len() as i64), |s| Some(s.size)),
                            "storage_key": row.stored.as_ref().map(|s| s.key.clone()),
                        })
                    };
                    rows.push(value);
                }
            }
        }
        "projects" => {
            for (id, p) in &state.projects {
                if reads_project(*id) {
                    rows.push(json!({"id": id, "name": p.name, "owner_id": p.owner, "seq": p.seq,
                                     "created_at": null, "updated_at": null}));
                }
            }
        }
        "project_members" => {
            for (id, p) in &state.projects {
                if reads_project(*id) {
                    for (user, role) in &p.members {
                        let role = match role {
                            Access::Owner => "owner",
                            Access::Editor => "editor",
                            _ => "viewer",
                        };
                        rows.push(json!({"project_id": id, "user_id": user, "role": role, "created_at": null}));
                    }
                }
            }
        }
        "user_profiles" => {
            // Each user their own profile ("profiles: self read").
            let me = caller.claims.get("sub").and_then(Value::as_str).and_then(|s| uuid::Uuid::parse_str(s).ok());
            for (id, profile) in &state.profiles {
                if bypass || Some(*id) == me {
                    rows.push(json!({"id": id, "email": profile.email, "display_name": profile.display_name,
                                     "created_at": null}));
                }
            }
        }
        _ => {}
    }
    rows.into_iter().filter_map(|v| if let Value::Object(m) = v { Some(m) } else { None }).collect()
}

/// A cell, typed for comparison.
#[derive(Clone, PartialEq)]
enum Cell {
    Null,
    Text(String),
    Int(i64),
    Bool(bool),
}

fn cell(value: &Value) -> Cell {
    match value {
        Value::Null => Cell::Null,
        Value::Bool(b) => Cell::Bool(*b),
        Value::Number(n) => n.as_i64().map(Cell::Int).unwrap_or_else(|| Cell::Text(n.to_string())),
        Value::String(s) => Cell::Text(s.clone()),
        other => Cell::Text(other.to_string()),
    }
}

fn compare(a: &Cell, b: &Cell) -> Option<Ordering> {
    match (a, b) {
        (Cell::Text(x), Cell::Text(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Cell::Int(x), Cell::Int(y)) => Some(x.cmp(y)),
        (Cell::Bool(x), Cell::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// `text::type` as PostgreSQL casts a filter value.
fn typed(ty: Ty, text: &str) -> Result<Cell, ApiError> {
    match ty {
        Ty::Text => Ok(Cell::Text(text.to_owned())),
        Ty::Uuid => crate::args::pg_uuid(text)
            .map(|u| Cell::Text(u.to_string()))
            .ok_or_else(|| error("22P02", format!("invalid input syntax for type uuid: \"{text}\""))),
        Ty::Int => text
            .trim()
            .parse::<i64>()
            .map(Cell::Int)
            .map_err(|_| error("22P02", format!("invalid input syntax for type bigint: \"{text}\""))),
        Ty::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "on" | "1" => Ok(Cell::Bool(true)),
            "f" | "false" | "no" | "off" | "0" => Ok(Cell::Bool(false)),
            _ => Err(error("22P02", format!("invalid input syntax for type boolean: \"{text}\""))),
        },
    }
}

/// SQL LIKE with `%` and `_` (PostgREST's `*` already turned into `%`).
fn like(text: &str, pattern: &str, fold: bool) -> bool {
    let (t, p): (Vec<char>, Vec<char>) = if fold {
        (text.to_lowercase().chars().collect(), pattern.to_lowercase().chars().collect())
    } else {
        (text.chars().collect(), pattern.chars().collect())
    };
    fn go(t: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(&t[i..], rest)),
            Some(('_', rest)) => !t.is_empty() && go(&t[1..], rest),
            Some((c, rest)) => t.first() == Some(c) && go(&t[1..], rest),
        }
    }
    go(&t, &p)
}

/// Whether `row` passes `filter` (SQL three-valued logic: unknown fails).
fn passes(row: &Map<String, Value>, filter: &Filter, ty: Ty) -> Result<bool, ApiError> {
    let value = cell(row.get(&filter.column).unwrap_or(&Value::Null));
    let result: Option<bool> = match filter.op {
        FilterOp::Is => {
            let want = filter.values.first().map(String::as_str).unwrap_or("");
            Some(match want {
                "null" => value == Cell::Null,
                "true" => value == Cell::Bool(true),
                "false" => value == Cell::Bool(false),
                _ => value == Cell::Null,
            })
        }
        FilterOp::In => {
            let items = filter.values.iter().map(|v| typed(ty, v)).collect::<Result<Vec<_>, _>>()?;
            if value == Cell::Null {
                None
            } else {
                Some(items.iter().any(|i| compare(&value, i) == Some(Ordering::Equal)))
            }
        }
        FilterOp::Like | FilterOp::Ilike => {
            let pattern = filter.values.first().cloned().unwrap_or_default().replace('*', "%");
            match &value {
                Cell::Null => None,
                Cell::Text(t) => Some(like(t, &pattern, filter.op == FilterOp::Ilike)),
                Cell::Int(i) => Some(like(&i.to_string(), &pattern, filter.op == FilterOp::Ilike)),
                Cell::Bool(b) => Some(like(&b.to_string(), &pattern, filter.op == FilterOp::Ilike)),
            }
        }
        op => {
            let target = typed(ty, filter.values.first().map(String::as_str).unwrap_or(""))?;
            compare(&value, &target).map(|ord| match op {
                FilterOp::Eq => ord == Ordering::Equal,
                FilterOp::Neq => ord != Ordering::Equal,
                FilterOp::Gt => ord == Ordering::Greater,
                FilterOp::Gte => ord != Ordering::Less,
                FilterOp::Lt => ord == Ordering::Less,
                _ => ord != Ordering::Greater,
            })
        }
    };
    Ok(match (result, filter.negated) {
        (Some(r), false) => r,
        (Some(r), true) => !r,
        (None, _) => false,
    })
}

/// The rows of `name` the caller may see that pass every filter (`name` is a known relation).
pub(crate) fn matching(
    state: &State,
    caller: &Caller,
    name: &str,
    filters: &[Filter],
) -> Result<Vec<Map<String, Value>>, ApiError> {
    let columns = relation(name).map_or(&[][..], |(_, columns)| columns);
    let ty_of = |column: &str| columns.iter().find(|(c, _)| *c == column).map_or(Ty::Text, |(_, t)| *t);
    let mut rows = Vec::new();
    for row in visible_rows(state, caller, name) {
        let mut keep = true;
        for filter in filters {
            keep &= passes(&row, filter, ty_of(&filter.column))?;
        }
        if keep {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The columns of `name`, if it is a relation of the API.
/// A file's head as `legacy_project_files` shows it (the plan's old column names).
pub(crate) fn legacy_row(project: uuid::Uuid, path: &str, row: &Row) -> Value {
    json!({"id": row.id, "project_id": project, "path": path, "type": row.file_type,
           "content": row.content, "created_at": row.updated_at, "updated_at": row.updated_at})
}

pub(crate) fn column_names(name: &str) -> Option<Vec<&'static str>> {
    relation(name).map(|(_, columns)| columns.iter().map(|(c, _)| *c).collect())
}

pub fn read(state: &State, auth: &RequestAuth, query: &ReadQuery) -> Result<ReadOutput, ApiError> {
    let Some((is_view, columns)) = relation(&query.relation) else { return Err(query.unknown_relation()) };
    let ty_of = |name: &str| columns.iter().find(|(c, _)| *c == name).map(|(_, t)| *t);
    query.check_columns(|c| ty_of(c).is_some())?;
    if auth.role == "anon" {
        let kind = if is_view { "view" } else { "table" };
        return Err(error("42501", format!("permission denied for {kind} {}", query.relation)));
    }
    let caller = Caller { role: auth.role.clone(), claims: auth.claims.clone() };
    let mut rows = matching(state, &caller, &query.relation, &query.filters)?;
    rows.sort_by(|a, b| {
        for term in &query.order {
            let (x, y) =
                (cell(a.get(&term.column).unwrap_or(&Value::Null)), cell(b.get(&term.column).unwrap_or(&Value::Null)));
            let nulls_first = term.nulls_first.unwrap_or(term.descending);
            let ord = match (&x, &y) {
                (Cell::Null, Cell::Null) => Ordering::Equal,
                (Cell::Null, _) => {
                    if nulls_first {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                (_, Cell::Null) => {
                    if nulls_first {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                _ => {
                    let ord = compare(&x, &y).unwrap_or(Ordering::Equal);
                    if term.descending {
                        ord.reverse()
                    } else {
                        ord
                    }
                }
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    });
    let offset = query.offset.unwrap_or(0) as usize;
    let limit = query.limit.map(|l| l as usize).unwrap_or(usize::MAX);
    let selected: Vec<Value> = rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|row| match &query.columns {
            None => {
                let mut ordered = Map::new();
                for (name, _) in columns {
                    ordered.insert((*name).to_owned(), row.get(*name).cloned().unwrap_or(Value::Null));
                }
                Value::Object(ordered)
            }
            Some(cols) => {
                Value::Object(cols.iter().map(|c| (c.clone(), row.get(c).cloned().unwrap_or(Value::Null))).collect())
            }
        })
        .collect();
    Ok(ReadOutput { count: selected.len() as u64, rows_json: Value::Array(selected).to_string() })
}
