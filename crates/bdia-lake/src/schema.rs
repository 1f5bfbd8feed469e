//! The schema of the hit lake: one row per hit and report suite.
//!
//! Column order: the lineage/identity/visit columns first (names fixed by
//! the contract), then one nullable string column per remaining simple
//! variable (named as the batch file column: `browserHeight`, `userAgent`...),
//! then `eVar1`..`eVar250`, `prop1`..`prop75`, `hier1`..`hier5`,
//! `list1`..`list3`, then the maps `context_data`, `customer_ids`, `hints`,
//! then the columns added since the first schema ([`ADDED_COLUMNS`]), all
//! nullable, at the end so that a table created before them gets them
//! appended (`crate::delta`) and its older parts read them as null.
//! `docs/LAKE.md` documents every column.

use std::sync::{Arc, OnceLock};

use arrow_schema::{
    ArrowError, DataType, Field as ArrowField, Fields, Schema, SchemaRef, TimeUnit,
};
use bdia_format::fields::{Field, MAX_EVAR, MAX_HIER, MAX_LIST, MAX_PROP};

/// Time zone of the timestamp columns (`hit_time`, `visit_start_time`).
pub const TIMESTAMP_TZ: &str = "UTC";

/// Simple variables that have a dedicated column of their own instead of a
/// raw string column: `pageName` -> `page_name`, `pageURL` -> `page_url`,
/// `linkName` -> `link_name`, `linkURL` -> `link_url`, `events` -> the parsed
/// `events` list, `reportSuiteID` -> `report_suite` (one per hit),
/// `timestamp` -> `hit_time`.
pub const DEDICATED: &[Field] = &[
    Field::PageName,
    Field::PageUrl,
    Field::LinkName,
    Field::LinkUrl,
    Field::Events,
    Field::ReportSuiteId,
    Field::Timestamp,
];

/// Columns added to the hit schema after its first version, in schema
/// order; always nullable (rows of parts written before them read null).
pub const ADDED_COLUMNS: &[&str] = &[
    "browser",
    "browser_version",
    "os",
    "os_version",
    "device_type",
    "is_bot",
    "referrer_type",
    "search_engine",
    "post_evars",
    "post_events",
    "duplicate_purchase",
    "product_list",
    "revenue",
    "units",
    "orders",
];

/// Columns whose row groups carry min/max statistics.
pub const STATISTICS_COLUMNS: &[&str] = &[
    "report_suite",
    "hit_time",
    "visitor_id",
    "visitor_id_type",
    "visit_num",
    "visit_page_num",
    "visit_start_time",
    "new_visit",
    "hit_type",
    "file_id",
    "row_number",
];

/// Columns written without a dictionary: nearly every value is distinct
/// (the row number, the hit's second, the visit's start).
pub const PLAIN_COLUMNS: &[&str] = &["hit_time", "visit_start_time", "row_number"];

/// The simple variables stored as raw nullable string columns, in schema order.
pub fn raw_fields() -> impl Iterator<Item = Field> {
    Field::ALL
        .iter()
        .copied()
        .filter(|f| !DEDICATED.contains(f))
}

/// The timestamp type of `hit_time` and `visit_start_time`: microseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(TIMESTAMP_TZ.into()))
}

/// `struct{name, value}` of one event.
pub(crate) fn event_fields() -> Fields {
    Fields::from(vec![
        ArrowField::new("name", DataType::Utf8, false),
        ArrowField::new("value", DataType::Float64, true),
    ])
}

/// The list item of `events`.
pub(crate) fn event_item() -> Arc<ArrowField> {
    Arc::new(ArrowField::new(
        "element",
        DataType::Struct(event_fields()),
        false,
    ))
}

/// `struct{category, product, quantity, price, events, evars}` of one
/// `products` entry.
pub(crate) fn product_fields() -> Fields {
    Fields::from(vec![
        ArrowField::new("category", DataType::Utf8, false),
        ArrowField::new("product", DataType::Utf8, false),
        ArrowField::new("quantity", DataType::Int64, true),
        ArrowField::new("price", DataType::Float64, true),
        ArrowField::new("events", DataType::List(event_item()), false),
        ArrowField::new(
            "evars",
            DataType::Map(map_entries(DataType::Utf8, false), false),
            false,
        ),
    ])
}

/// The list item of `product_list`.
pub(crate) fn product_item() -> Arc<ArrowField> {
    Arc::new(ArrowField::new(
        "element",
        DataType::Struct(product_fields()),
        false,
    ))
}

/// `struct{id, auth_state, is_mc_seed}` of one customer ID.
pub(crate) fn customer_id_fields() -> Fields {
    Fields::from(vec![
        ArrowField::new("id", DataType::Utf8, false),
        ArrowField::new("auth_state", DataType::Utf8, true),
        ArrowField::new("is_mc_seed", DataType::Boolean, false),
    ])
}

/// The entries field of a map column with string keys.
pub(crate) fn map_entries(value: DataType, value_nullable: bool) -> Arc<ArrowField> {
    Arc::new(ArrowField::new(
        "key_value",
        DataType::Struct(Fields::from(vec![
            ArrowField::new("key", DataType::Utf8, false),
            ArrowField::new("value", value, value_nullable),
        ])),
        false,
    ))
}

fn map(name: &str, value: DataType, value_nullable: bool) -> ArrowField {
    ArrowField::new(
        name,
        DataType::Map(map_entries(value, value_nullable), false),
        false,
    )
}

/// The Arrow schema of every lake file (the same for all files).
pub fn hits_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA.get_or_init(build_schema).clone()
}

fn build_schema() -> SchemaRef {
    let s = |name: &str| ArrowField::new(name, DataType::Utf8, false);
    let opt = |name: &str| ArrowField::new(name, DataType::Utf8, true);
    let mut fields = vec![
        s("report_suite"),
        ArrowField::new("hit_time", timestamp_type(), false),
        s("visitor_id"),
        s("visitor_id_type"),
        ArrowField::new("visit_num", DataType::Int32, false),
        ArrowField::new("visit_page_num", DataType::Int32, false),
        ArrowField::new("visit_start_time", timestamp_type(), false),
        ArrowField::new("new_visit", DataType::Boolean, false),
        ArrowField::new("out_of_order", DataType::Boolean, false),
        s("hit_type"),
        opt("page_name"),
        opt("page_url"),
        opt("link_name"),
        opt("link_url"),
        ArrowField::new("events", DataType::List(event_item()), false),
        s("file_id"),
        ArrowField::new("row_number", DataType::Int64, false),
    ];
    fields.extend(raw_fields().map(|f| opt(f.column())));
    fields.extend((1..=MAX_EVAR).map(|n| opt(&format!("eVar{n}"))));
    fields.extend((1..=MAX_PROP).map(|n| opt(&format!("prop{n}"))));
    fields.extend((1..=MAX_HIER).map(|n| opt(&format!("hier{n}"))));
    fields.extend((1..=MAX_LIST).map(|n| opt(&format!("list{n}"))));
    fields.push(map("context_data", DataType::Utf8, false));
    fields.push(map(
        "customer_ids",
        DataType::Struct(customer_id_fields()),
        false,
    ));
    fields.push(map("hints", DataType::Utf8, false));
    for name in ADDED_COLUMNS {
        fields.push(match *name {
            "is_bot" | "duplicate_purchase" => ArrowField::new(*name, DataType::Boolean, true),
            "post_evars" => ArrowField::new(
                *name,
                DataType::Map(map_entries(DataType::Utf8, false), false),
                true,
            ),
            "post_events" => ArrowField::new(*name, DataType::List(event_item()), true),
            "product_list" => ArrowField::new(*name, DataType::List(product_item()), true),
            "revenue" => ArrowField::new(*name, DataType::Float64, true),
            "units" => ArrowField::new(*name, DataType::Int64, true),
            "orders" => ArrowField::new(*name, DataType::Int32, true),
            _ => opt(name),
        });
    }
    Arc::new(Schema::new(fields))
}

/// `batch` (read from a part) with every column of [`hits_schema`], in
/// schema order: a part holds only the columns with a value in some row
/// (`crate::writer`), and a column it lacks is null in each of its rows.
/// An error when the batch has a column the schema does not have, one of
/// another type, or lacks one that cannot be null.
///
/// ```
/// # use std::sync::Arc;
/// use arrow_array::{RecordBatch, StringArray};
/// use bdia_lake::schema::conform;
/// let schema = bdia_lake::hits_schema();
/// // A part (of no rows) with every column but eVar1.
/// let keep: Vec<usize> = (0..schema.fields().len())
///     .filter(|&i| schema.field(i).name() != "eVar1")
///     .collect();
/// let part = RecordBatch::new_empty(schema.clone()).project(&keep).unwrap();
/// assert_eq!(conform(&part).unwrap().schema(), schema);
/// // A part without the columns that cannot be null is refused.
/// let page = schema.index_of("page_name").unwrap();
/// let bad = RecordBatch::try_new(
///     Arc::new(schema.project(&[page]).unwrap()),
///     vec![Arc::new(StringArray::from(vec![Some("home")]))],
/// )
/// .unwrap();
/// assert!(conform(&bad).is_err());
/// ```
pub fn conform(batch: &arrow_array::RecordBatch) -> Result<arrow_array::RecordBatch, ArrowError> {
    let schema = hits_schema();
    for f in batch.schema().fields() {
        match schema.field_with_name(f.name()) {
            Ok(ours) if ours.data_type() == f.data_type() => {}
            Ok(ours) => {
                return Err(ArrowError::SchemaError(format!(
                    "column {} is {}, the hit schema has {}",
                    f.name(),
                    f.data_type(),
                    ours.data_type()
                )))
            }
            Err(e) => return Err(e),
        }
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => arrow_array::new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    arrow_array::RecordBatch::try_new(schema, columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_are_unique_and_include_the_contract() {
        let schema = hits_schema();
        let mut names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        for required in [
            "report_suite",
            "hit_time",
            "visitor_id",
            "visitor_id_type",
            "visit_num",
            "visit_page_num",
            "visit_start_time",
            "new_visit",
            "hit_type",
            "page_name",
            "page_url",
            "link_name",
            "link_url",
            "events",
            "file_id",
            "row_number",
            "eVar1",
            "eVar250",
            "prop75",
            "hier5",
            "list3",
            "userAgent",
            "context_data",
            "customer_ids",
            "hints",
        ] {
            assert!(names.contains(&required), "{required} missing");
        }
        // A setting for a name not in the schema would do nothing.
        for stats in STATISTICS_COLUMNS.iter().chain(PLAIN_COLUMNS) {
            assert!(
                names.contains(stats),
                "{stats} has statistics but no column"
            );
        }
        for added in ADDED_COLUMNS {
            let f = schema.field_with_name(added).unwrap();
            assert!(f.is_nullable(), "{added} must be nullable");
        }
        let n = names.len();
        names.sort_unstable_by_key(|n| n.to_ascii_lowercase());
        names.dedup_by_key(|n| n.to_ascii_lowercase());
        assert_eq!(names.len(), n, "names unique even case-insensitively");
    }
}
