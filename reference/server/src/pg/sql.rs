//! SQL text for RPC calls and reads, built from the schema cache the way PostgREST builds it.
//!
//! Identifiers come only from the schema cache (never from the request), and values travel only
//! as bind parameters, so nothing a client sends is spliced into SQL.

use super::schema::{Function, ReturnKind};
use fsync_store::data::{Filter, FilterOp, OrderTerm, WriteKind};
use serde_json::Value;

/// Double-quotes an identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The statement that calls `function` with the arguments named in `given` (its one bind
/// parameter, `$1`, is the JSON object of arguments) and returns the response body as text.
///
/// Arguments are typed by `json_to_record`, so a mistyped value fails with the same error a
/// PostgREST call gets (`22P02` and friends), and arguments not given keep their defaults.
pub fn rpc_statement(function: &Function, given: &[&str]) -> String {
    let args: Vec<&(String, String)> = function.args.iter().filter(|(n, _)| given.contains(&n.as_str())).collect();
    let call = format!(
        "public.{}({})",
        ident(&function.name),
        args.iter().map(|(n, _)| format!("{0} := _args.{0}", ident(n))).collect::<Vec<_>>().join(", ")
    );
    let from_args = if args.is_empty() {
        "(SELECT $1::json) AS _args(_unused)".to_owned()
    } else {
        format!(
            "json_to_record($1::json) AS _args({})",
            args.iter().map(|(n, t)| format!("{} {}", ident(n), t)).collect::<Vec<_>>().join(", ")
        )
    };
    match function.returns {
        ReturnKind::Void => format!("SELECT {call}, NULL::text FROM {from_args}"),
        ReturnKind::Scalar => format!("SELECT to_json({call})::text FROM {from_args}"),
        ReturnKind::Row => {
            format!("SELECT to_json(_r)::text FROM {from_args}, LATERAL {call} AS _r")
        }
        ReturnKind::Set => {
            format!("SELECT coalesce(json_agg(_r), '[]'::json)::text FROM {from_args}, LATERAL {call} AS _r")
        }
    }
}

/// The statement for a read of `relation` with typed `columns` (from the schema cache). Filter
/// values are bind parameters `$1..`, in the order returned alongside; the statement returns the
/// rows as a JSON array in text and their count.
pub fn read_statement(
    relation: &str,
    selected: Option<&[String]>,
    filters: &[Filter],
    order: &[OrderTerm],
    limit: Option<u64>,
    offset: Option<u64>,
    column_type: impl Fn(&str) -> String,
) -> (String, Vec<Param>) {
    let columns = match selected {
        None => "*".to_owned(),
        Some(cols) => cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", "),
    };
    let mut params = Vec::new();
    let conditions = conditions(filters, &column_type, &mut params);
    let mut sql = format!("SELECT {columns} FROM public.{}", ident(relation));
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    if !order.is_empty() {
        let terms: Vec<String> = order
            .iter()
            .map(|t| {
                let mut term = format!("{} {}", ident(&t.column), if t.descending { "DESC" } else { "ASC" });
                match t.nulls_first {
                    Some(true) => term.push_str(" NULLS FIRST"),
                    Some(false) => term.push_str(" NULLS LAST"),
                    None => {}
                }
                term
            })
            .collect();
        sql.push_str(" ORDER BY ");
        sql.push_str(&terms.join(", "));
    }
    if let Some(limit) = limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    if let Some(offset) = offset {
        sql.push_str(&format!(" OFFSET {offset}"));
    }
    (format!("SELECT coalesce(json_agg(_r), '[]'::json)::text, count(*) FROM ({sql}) AS _r"), params)
}

/// The SQL of `filters` (typed by `column_type`), their values pushed onto `params` as bind
/// parameters.
fn conditions(filters: &[Filter], column_type: &impl Fn(&str) -> String, params: &mut Vec<Param>) -> Vec<String> {
    let mut conditions = Vec::new();
    for filter in filters {
        let col = ident(&filter.column);
        let ty = column_type(&filter.column);
        let condition = match filter.op {
            FilterOp::Is => {
                let value = filter.values.first().map(String::as_str).unwrap_or("");
                format!("{col} IS {}", value.to_ascii_uppercase())
            }
            FilterOp::In => {
                params.push(Param::List(filter.values.clone()));
                format!("{col} = ANY((${}::text[])::{ty}[])", params.len())
            }
            FilterOp::Like | FilterOp::Ilike => {
                let pattern = filter.values.first().cloned().unwrap_or_default().replace('*', "%");
                params.push(Param::Text(pattern));
                let op = if filter.op == FilterOp::Like { "LIKE" } else { "ILIKE" };
                format!("{col}::text {op} ${}::text", params.len())
            }
            op => {
                params.push(Param::Text(filter.values.first().cloned().unwrap_or_default()));
                let sql_op = match op {
                    FilterOp::Eq => "=",
                    FilterOp::Neq => "<>",
                    FilterOp::Gt => ">",
                    FilterOp::Gte => ">=",
                    FilterOp::Lt => "<",
                    _ => "<=",
                };
                format!("{col} {sql_op} (${}::text)::{ty}", params.len())
            }
        };
        conditions.push(if filter.negated { format!("NOT ({condition})") } else { condition });
    }
    conditions
}

/// The statement of a table write on `relation` (whose columns `column_type` types): an INSERT
/// of JSON rows, or an UPDATE or DELETE of the rows `filters` match. It returns the rows written
/// as a JSON array in text, and their count.
pub fn write_statement(relation: &str, kind: &WriteKind, column_type: impl Fn(&str) -> String) -> (String, Vec<Param>) {
    let target = format!("public.{}", ident(relation));
    let mut params = Vec::new();
    let write = match kind {
        WriteKind::Insert { rows } => {
            let mut columns: Vec<&str> = rows.iter().flat_map(|r| r.keys()).map(String::as_str).collect();
            columns.sort_unstable();
            columns.dedup();
            let list = columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
            params.push(Param::Json(Value::Array(rows.iter().cloned().map(Value::Object).collect())));
            format!("INSERT INTO {target} ({list}) SELECT {list} FROM jsonb_populate_recordset(NULL::{target}, $1::jsonb) RETURNING *")
        }
        WriteKind::Update { set, filters } => {
            params.push(Param::Json(Value::Object(set.clone())));
            let assignments = set
                .keys()
                .map(|c| format!("{} = (jsonb_populate_record(NULL::{target}, $1::jsonb)).{}", ident(c), ident(c)))
                .collect::<Vec<_>>()
                .join(", ");
            let conditions = conditions(filters, &column_type, &mut params);
            format!("UPDATE {target} SET {assignments} WHERE {} RETURNING *", conditions.join(" AND "))
        }
        WriteKind::Delete { filters } => {
            let conditions = conditions(filters, &column_type, &mut params);
            format!("DELETE FROM {target} WHERE {} RETURNING *", conditions.join(" AND "))
        }
    };
    (format!("WITH _w AS ({write}) SELECT coalesce(json_agg(_w), '[]'::json)::text, count(*) FROM _w"), params)
}

/// A bind parameter of a read or a write.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    List(Vec<String>),
    Json(Value),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert() -> Function {
        Function {
            name: "upsert_project_file".into(),
            args: vec![("project_uuid".into(), "uuid".into()), ("expected_version".into(), "integer".into())],
            defaults: 1,
            returns: ReturnKind::Scalar,
        }
    }

    #[test]
    fn rpc_passes_only_given_arguments() {
        assert_eq!(
            rpc_statement(&upsert(), &["project_uuid"]),
            "SELECT to_json(public.\"upsert_project_file\"(\"project_uuid\" := _args.\"project_uuid\"))::text \
             FROM json_to_record($1::json) AS _args(\"project_uuid\" uuid)"
        );
    }

    #[test]
    fn set_returning_functions_aggregate_to_an_array() {
        let f = Function { name: "list_current_files".into(), args: vec![], defaults: 0, returns: ReturnKind::Set };
        assert_eq!(
            rpc_statement(&f, &[]),
            "SELECT coalesce(json_agg(_r), '[]'::json)::text FROM (SELECT $1::json) AS _args(_unused), \
             LATERAL public.\"list_current_files\"() AS _r"
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn read_binds_every_value() {
        let filters = vec![
            Filter { column: "project_id".into(), op: FilterOp::Eq, negated: false, values: vec!["x".into()] },
            Filter {
                column: "file_path".into(),
                op: FilterOp::In,
                negated: true,
                values: vec!["a".into(), "b".into()],
            },
            Filter { column: "content".into(), op: FilterOp::Is, negated: false, values: vec!["null".into()] },
        ];
        let order = vec![OrderTerm { column: "file_path".into(), descending: true, nulls_first: Some(false) }];
        let (sql, params) =
            read_statement("project_files_current", None, &filters, &order, Some(10), Some(5), |c| match c {
                "project_id" => "uuid".into(),
                _ => "text".into(),
            });
        assert_eq!(
            sql,
            "SELECT coalesce(json_agg(_r), '[]'::json)::text, count(*) FROM (SELECT * FROM public.\"project_files_current\" \
             WHERE \"project_id\" = ($1::text)::uuid AND NOT (\"file_path\" = ANY(($2::text[])::text[])) AND \"content\" IS NULL \
             ORDER BY \"file_path\" DESC NULLS LAST LIMIT 10 OFFSET 5) AS _r"
        );
        assert_eq!(params, vec![Param::Text("x".into()), Param::List(vec!["a".into(), "b".into()])]);
    }
}
