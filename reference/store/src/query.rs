//! Parsing PostgREST's read grammar (the subset supabase-js's builders produce) into a
//! [`ReadQuery`]: what a caller's query string becomes before any store sees it (the server's
//! reads and table writes; the fuzz target `postgrest_query`).

use crate::data::{Filter, FilterOp, OrderTerm, ReadQuery};
use crate::error::{ApiError, StatusCode};

/// Query parameters that are not filters.
const RESERVED: &[&str] = &["select", "order", "limit", "offset", "apikey", "columns", "on_conflict"];

fn parse_error(message: impl Into<String>, details: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "PGRST100", message).with_details(details)
}

/// Parses the query string pairs of `GET /rest/v1/{relation}`.
pub fn parse(relation: &str, pairs: &[(String, String)]) -> Result<ReadQuery, ApiError> {
    let mut query = ReadQuery { relation: relation.to_owned(), ..ReadQuery::default() };
    for (key, value) in pairs {
        match key.as_str() {
            "select" => query.columns = parse_select(value)?,
            "order" => query.order = parse_order(value)?,
            "limit" => query.limit = Some(parse_count("limit", value)?),
            "offset" => query.offset = Some(parse_count("offset", value)?),
            k if RESERVED.contains(&k) => {}
            column => query.filters.push(parse_filter(column, value)?),
        }
    }
    Ok(query)
}

fn parse_select(value: &str) -> Result<Option<Vec<String>>, ApiError> {
    let value = value.trim();
    if value.is_empty() || value == "*" {
        return Ok(None);
    }
    let mut columns = Vec::new();
    for item in value.split(',') {
        let item = item.trim();
        if item == "*" {
            return Ok(None);
        }
        if !plain_column(item) {
            return Err(parse_error(
                format!("failed to parse select parameter ({value})"),
                "only plain column names and * are supported",
            ));
        }
        columns.push(item.to_owned());
    }
    Ok(Some(columns))
}

fn parse_order(value: &str) -> Result<Vec<OrderTerm>, ApiError> {
    value
        .split(',')
        .map(|term| {
            let mut parts = term.trim().split('.');
            let column = parts.next().unwrap_or("").to_owned();
            if !plain_column(&column) {
                return Err(parse_error(format!("failed to parse order ({value})"), "a plain column name"));
            }
            let mut order = OrderTerm { column, descending: false, nulls_first: None };
            for modifier in parts {
                match modifier {
                    "asc" => order.descending = false,
                    "desc" => order.descending = true,
                    "nullsfirst" => order.nulls_first = Some(true),
                    "nullslast" => order.nulls_first = Some(false),
                    other => {
                        return Err(parse_error(
                            format!("failed to parse order ({value})"),
                            format!("unknown modifier {other}"),
                        ))
                    }
                }
            }
            Ok(order)
        })
        .collect()
}

fn parse_count(name: &str, value: &str) -> Result<u64, ApiError> {
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| parse_error(format!("failed to parse {name} ({value})"), "expected a non-negative integer"))
}

/// A column as a query may name one: letters, digits and `_`, at least one.
fn plain_column(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')
}

fn parse_filter(column: &str, value: &str) -> Result<Filter, ApiError> {
    let bad = |why: &str| parse_error(format!("failed to parse filter ({column}={value})"), why.to_owned());
    if !plain_column(column) {
        return Err(bad("a filter names a plain column"));
    }
    // PostgreSQL's text cannot hold NUL: say so here rather than as a driver error.
    if value.contains('\0') {
        return Err(bad("a value cannot contain a NUL character"));
    }
    let (negated, rest) = match value.strip_prefix("not.") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (op, operand) = rest.split_once('.').ok_or_else(|| bad("expected op.value"))?;
    let op = match op {
        "eq" => FilterOp::Eq,
        "neq" => FilterOp::Neq,
        "gt" => FilterOp::Gt,
        "gte" => FilterOp::Gte,
        "lt" => FilterOp::Lt,
        "lte" => FilterOp::Lte,
        "like" => FilterOp::Like,
        "ilike" => FilterOp::Ilike,
        "is" => FilterOp::Is,
        "in" => FilterOp::In,
        _ => return Err(bad("unknown operator")),
    };
    let values = match op {
        FilterOp::Is => {
            let v = operand.to_ascii_lowercase();
            if !matches!(v.as_str(), "null" | "true" | "false" | "unknown") {
                return Err(bad("is takes null, true, false or unknown"));
            }
            vec![v]
        }
        FilterOp::In => {
            let inner = operand
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(|| bad("in takes a list in parentheses"))?;
            split_list(inner)
        }
        _ => vec![operand.to_owned()],
    };
    Ok(Filter { column: column.to_owned(), op, negated, values })
}

/// Splits an `in.(...)` list on commas, honouring double-quoted items.
fn split_list(inner: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            ',' if !quoted => items.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    if !inner.is_empty() {
        items.push(current);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_filter_names_a_plain_column_and_no_value_holds_nul() {
        for (key, value) in
            [("", "eq.1"), ("a b", "eq.1"), ("a\"b", "eq.1"), ("file_path", "in.(a,b\0)"), ("x", "eq.\0")]
        {
            let refused = parse("t", &pairs(&[(key, value)])).unwrap_err();
            assert_eq!(
                (refused.status, refused.body.code.as_str()),
                (StatusCode::BAD_REQUEST, "PGRST100"),
                "{key:?}={value:?}"
            );
        }
        assert!(parse("t", &pairs(&[("order", "a b.desc")])).is_err());
    }

    #[test]
    fn parses_what_supabase_js_sends() {
        let q = parse(
            "project_files_current",
            &pairs(&[
                ("select", "*"),
                ("project_id", "eq.6f1c"),
                ("file_path", "not.in.(\"a,b\",c)"),
                ("order", "file_path.desc.nullslast"),
                ("limit", "10"),
            ]),
        )
        .unwrap();
        assert_eq!(q.columns, None);
        assert_eq!(
            q.filters[0],
            Filter { column: "project_id".into(), op: FilterOp::Eq, negated: false, values: vec!["6f1c".into()] }
        );
        assert_eq!(q.filters[1].values, vec!["a,b".to_string(), "c".to_string()]);
        assert!(q.filters[1].negated);
        assert_eq!(q.order, vec![OrderTerm { column: "file_path".into(), descending: true, nulls_first: Some(false) }]);
        assert_eq!(q.limit, Some(10));
    }

    #[test]
    fn refuses_what_it_cannot_parse() {
        for (k, v) in [
            ("select", "a,b(c)"),
            ("x", "eq"),
            ("x", "zz.1"),
            ("x", "is.maybe"),
            ("limit", "-1"),
            ("order", "a.sideways"),
        ] {
            let err = parse("t", &pairs(&[(k, v)])).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{k}={v}");
            assert_eq!(err.body.code, "PGRST100");
        }
    }
}
