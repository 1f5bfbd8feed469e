//! Arrow builders for the hit schema: enriched hits in, record batches out.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder,
    MapBuilder, MapFieldNames, StringBuilder, StructBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{new_null_array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, SchemaRef};
use bdia_format::fields::{Field, MAX_EVAR, MAX_HIER, MAX_LIST, MAX_PROP};
use bdia_format::hit::AuthState;
use bdia_model::EnrichedHit;

use crate::schema::{
    customer_id_fields, event_fields, event_item, hits_schema, map_entries, product_fields,
    product_item, raw_fields, TIMESTAMP_TZ,
};

fn map_names() -> MapFieldNames {
    MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    }
}

fn micros(secs: i64) -> i64 {
    secs.saturating_mul(1_000_000)
}

fn auth_state_name(a: AuthState) -> &'static str {
    match a {
        AuthState::Unknown => "UNKNOWN",
        AuthState::Authenticated => "AUTHENTICATED",
        AuthState::LoggedOut => "LOGGED_OUT",
    }
}

/// A nullable string column that costs nothing until it gets a value: most
/// of the ~360 variable columns are null in most rows, so appending a null
/// to each of them per row would dominate the cost of a row.
#[derive(Default)]
struct Sparse {
    builder: Option<StringBuilder>,
    /// Value bytes of the column's last batch: the next one starts with
    /// that much room instead of growing by doubling.
    bytes_hint: usize,
}

impl Sparse {
    /// Sets row `row` (rows before it that were not set are null);
    /// `rows_hint` is the batch size.
    fn set(&mut self, row: usize, value: &str, rows_hint: usize) {
        let bytes = self.bytes_hint.max(value.len() * 8);
        let b = self
            .builder
            .get_or_insert_with(|| StringBuilder::with_capacity(rows_hint, bytes));
        let missing = row - b.len();
        if missing > 0 {
            b.append_nulls(missing);
        }
        b.append_value(value);
    }

    fn set_option(&mut self, row: usize, value: Option<&str>, rows_hint: usize) {
        if let Some(v) = value {
            self.set(row, v, rows_hint);
        }
    }

    /// The column of `rows` rows; the builder is released. `nulls` is an
    /// all-null string array of `rows` rows, shared by every empty column.
    fn finish(&mut self, rows: usize, nulls: &ArrayRef) -> ArrayRef {
        match self.builder.take() {
            None => nulls.clone(),
            Some(mut b) => {
                let missing = rows - b.len();
                if missing > 0 {
                    b.append_nulls(missing);
                }
                self.bytes_hint = b.values_slice().len();
                Arc::new(b.finish())
            }
        }
    }
}

fn sparse(n: usize) -> Vec<Sparse> {
    (0..n).map(|_| Sparse::default()).collect()
}

/// A string column with a value in every row, refilled with room for a
/// whole batch after each [`Dense::finish`].
struct Dense {
    builder: StringBuilder,
    rows_hint: usize,
}

impl Dense {
    fn new(rows_hint: usize) -> Dense {
        Dense {
            builder: StringBuilder::with_capacity(rows_hint, rows_hint * 16),
            rows_hint,
        }
    }

    fn append(&mut self, value: &str) {
        self.builder.append_value(value);
    }

    fn finish(&mut self) -> ArrayRef {
        let bytes = self.builder.values_slice().len();
        let full = std::mem::replace(
            &mut self.builder,
            StringBuilder::with_capacity(self.rows_hint, bytes),
        );
        let mut full = full;
        Arc::new(full.finish())
    }
}

/// Column builders for one batch of hits.
pub(crate) struct HitBatchBuilder {
    schema: SchemaRef,
    raw: Vec<Field>,
    report_suite: Dense,
    hit_time: TimestampMicrosecondBuilder,
    visitor_id: Dense,
    visitor_id_type: Dense,
    visit_num: Int32Builder,
    visit_page_num: Int32Builder,
    visit_start_time: TimestampMicrosecondBuilder,
    new_visit: BooleanBuilder,
    out_of_order: BooleanBuilder,
    hit_type: Dense,
    page_name: Sparse,
    page_url: Sparse,
    link_name: Sparse,
    link_url: Sparse,
    events: ListBuilder<StructBuilder>,
    file_id: Dense,
    row_number: Int64Builder,
    vars: Vec<Sparse>,
    evars: Vec<Sparse>,
    props: Vec<Sparse>,
    hiers: Vec<Sparse>,
    lists: Vec<Sparse>,
    context_data: MapBuilder<StringBuilder, StringBuilder>,
    customer_ids: MapBuilder<StringBuilder, StructBuilder>,
    hints: MapBuilder<StringBuilder, StringBuilder>,
    browser: Sparse,
    browser_version: Sparse,
    os: Sparse,
    os_version: Sparse,
    device_type: Sparse,
    is_bot: BooleanBuilder,
    referrer_type: Dense,
    search_engine: Sparse,
    post_evars: MapBuilder<StringBuilder, StringBuilder>,
    post_events: ListBuilder<StructBuilder>,
    duplicate_purchase: BooleanBuilder,
    product_list: ListBuilder<StructBuilder>,
    revenue: Float64Builder,
    units: Int64Builder,
    orders: Int32Builder,
    rows: usize,
    capacity: usize,
}

/// A builder of `events` lists (`struct{name, value}` items).
fn event_list() -> ListBuilder<StructBuilder> {
    ListBuilder::new(event_struct()).with_field(event_item())
}

fn event_struct() -> StructBuilder {
    StructBuilder::new(
        event_fields(),
        vec![
            Box::new(StringBuilder::new()) as Box<dyn ArrayBuilder>,
            Box::new(Float64Builder::new()),
        ],
    )
}

/// Appends one list of events.
fn append_events<'e>(
    list: &mut ListBuilder<StructBuilder>,
    events: impl IntoIterator<Item = (&'e str, Option<f64>)>,
) {
    let item = list.values();
    for (name, value) in events {
        item.field_builder::<StringBuilder>(0)
            .expect("name")
            .append_value(name);
        item.field_builder::<Float64Builder>(1)
            .expect("value")
            .append_option(value);
        item.append(true);
    }
    list.append(true);
}

/// A builder of `product_list` lists.
fn product_list() -> ListBuilder<StructBuilder> {
    let product = StructBuilder::new(
        product_fields(),
        vec![
            Box::new(StringBuilder::new()) as Box<dyn ArrayBuilder>,
            Box::new(StringBuilder::new()),
            Box::new(Int64Builder::new()),
            Box::new(Float64Builder::new()),
            Box::new(event_list()),
            Box::new(string_map()),
        ],
    );
    ListBuilder::new(product).with_field(product_item())
}

/// `eVar<n>`, the key of `post_evars` and of a product's `evars` (built
/// once: it is written for every persisted value of every hit).
fn evar_key(n: u16) -> std::borrow::Cow<'static, str> {
    static KEYS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        (0..=bdia_format::fields::MAX_EVAR)
            .map(|n| format!("eVar{n}"))
            .collect()
    });
    match KEYS.get(usize::from(n)) {
        Some(k) => std::borrow::Cow::Borrowed(k),
        None => std::borrow::Cow::Owned(format!("eVar{n}")),
    }
}

fn string_map() -> MapBuilder<StringBuilder, StringBuilder> {
    MapBuilder::new(
        Some(map_names()),
        StringBuilder::new(),
        StringBuilder::new(),
    )
    .with_values_field(value_field(&map_entries(
        arrow_schema::DataType::Utf8,
        false,
    )))
}

/// The value field of a map's entries struct.
fn value_field(entries: &arrow_schema::FieldRef) -> arrow_schema::FieldRef {
    match entries.data_type() {
        arrow_schema::DataType::Struct(f) => f[1].clone(),
        _ => unreachable!("map entries are a struct"),
    }
}

impl HitBatchBuilder {
    /// Builders sized for batches of `capacity` rows.
    pub(crate) fn new(capacity: usize) -> HitBatchBuilder {
        let raw: Vec<Field> = raw_fields().collect();
        let cid = StructBuilder::new(
            customer_id_fields(),
            vec![
                Box::new(StringBuilder::new()) as Box<dyn ArrayBuilder>,
                Box::new(StringBuilder::new()),
                Box::new(BooleanBuilder::new()),
            ],
        );
        let cid_entries = map_entries(arrow_schema::DataType::Struct(customer_id_fields()), false);
        HitBatchBuilder {
            schema: hits_schema(),
            vars: sparse(raw.len()),
            raw,
            report_suite: Dense::new(capacity),
            hit_time: TimestampMicrosecondBuilder::with_capacity(capacity)
                .with_timezone(TIMESTAMP_TZ),
            visitor_id: Dense::new(capacity),
            visitor_id_type: Dense::new(capacity),
            visit_num: Int32Builder::with_capacity(capacity),
            visit_page_num: Int32Builder::with_capacity(capacity),
            visit_start_time: TimestampMicrosecondBuilder::with_capacity(capacity)
                .with_timezone(TIMESTAMP_TZ),
            new_visit: BooleanBuilder::with_capacity(capacity),
            out_of_order: BooleanBuilder::with_capacity(capacity),
            hit_type: Dense::new(capacity),
            page_name: Sparse::default(),
            page_url: Sparse::default(),
            link_name: Sparse::default(),
            link_url: Sparse::default(),
            events: event_list(),
            file_id: Dense::new(capacity),
            row_number: Int64Builder::with_capacity(capacity),
            evars: sparse(MAX_EVAR.into()),
            props: sparse(MAX_PROP.into()),
            hiers: sparse(MAX_HIER.into()),
            lists: sparse(MAX_LIST.into()),
            context_data: string_map(),
            customer_ids: MapBuilder::new(Some(map_names()), StringBuilder::new(), cid)
                .with_values_field(value_field(&cid_entries)),
            hints: string_map(),
            browser: Sparse::default(),
            browser_version: Sparse::default(),
            os: Sparse::default(),
            os_version: Sparse::default(),
            device_type: Sparse::default(),
            is_bot: BooleanBuilder::with_capacity(capacity),
            referrer_type: Dense::new(capacity),
            search_engine: Sparse::default(),
            post_evars: string_map(),
            post_events: event_list(),
            duplicate_purchase: BooleanBuilder::with_capacity(capacity),
            product_list: product_list(),
            revenue: Float64Builder::with_capacity(capacity),
            units: Int64Builder::with_capacity(capacity),
            orders: Int32Builder::with_capacity(capacity),
            rows: 0,
            capacity,
        }
    }

    /// Rows appended since the last [`HitBatchBuilder::finish`].
    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    pub(crate) fn append(&mut self, h: &EnrichedHit, file_id: &str) -> Result<(), ArrowError> {
        let hit = &h.hit;
        self.report_suite.append(&h.report_suite);
        self.hit_time.append_value(micros(hit.timestamp));
        self.visitor_id.append(h.visitor_id());
        self.visitor_id_type.append(h.visitor_id_type.as_str());
        self.visit_num
            .append_value(i32::try_from(h.visit.visit_num).unwrap_or(i32::MAX));
        self.visit_page_num
            .append_value(i32::try_from(h.visit.visit_page_num).unwrap_or(i32::MAX));
        self.visit_start_time
            .append_value(micros(h.visit.visit_start_time));
        self.new_visit.append_value(h.visit.new_visit);
        self.out_of_order.append_value(h.visit.out_of_order);
        self.hit_type.append(hit.hit_type.as_str());
        let row = self.rows;
        let cap = self.capacity;
        self.page_name
            .set_option(row, hit.get(Field::PageName), cap);
        self.page_url.set_option(row, hit.get(Field::PageUrl), cap);
        self.link_name
            .set_option(row, hit.get(Field::LinkName), cap);
        self.link_url.set_option(row, hit.get(Field::LinkUrl), cap);
        append_events(
            &mut self.events,
            hit.events.iter().map(|e| (e.name.as_str(), e.value)),
        );
        self.file_id.append(file_id);
        self.row_number
            .append_value(i64::try_from(hit.row).unwrap_or(i64::MAX));
        for (b, f) in self.vars.iter_mut().zip(&self.raw) {
            b.set_option(row, hit.get(*f), cap);
        }
        for (map, out) in [
            (&hit.evars, &mut self.evars),
            (&hit.props, &mut self.props),
            (&hit.hiers, &mut self.hiers),
            (&hit.lists, &mut self.lists),
        ] {
            for (&n, v) in map {
                if let Some(col) = usize::from(n).checked_sub(1).and_then(|i| out.get_mut(i)) {
                    col.set(row, v, cap);
                }
            }
        }
        for (k, v) in &hit.context_data {
            self.context_data.keys().append_value(k);
            self.context_data.values().append_value(v);
        }
        self.context_data.append(true)?;
        for (k, v) in &hit.hints {
            self.hints.keys().append_value(k);
            self.hints.values().append_value(v);
        }
        self.hints.append(true)?;
        for (t, c) in &hit.customer_ids {
            self.customer_ids.keys().append_value(t);
            let s = self.customer_ids.values();
            s.field_builder::<StringBuilder>(0)
                .expect("id")
                .append_value(&c.id);
            s.field_builder::<StringBuilder>(1)
                .expect("auth_state")
                .append_option(c.auth_state.map(auth_state_name));
            s.field_builder::<BooleanBuilder>(2)
                .expect("is_mc_seed")
                .append_value(c.is_mc_seed);
            s.append(true);
        }
        self.customer_ids.append(true)?;
        match &h.device {
            Some(d) => {
                self.browser.set(row, &d.browser, cap);
                self.browser_version
                    .set_option(row, d.browser_version.as_deref(), cap);
                self.os.set(row, &d.os, cap);
                self.os_version
                    .set_option(row, d.os_version.as_deref(), cap);
                self.device_type.set(row, d.device_type.as_str(), cap);
                self.is_bot.append_value(d.is_bot());
            }
            None => self.is_bot.append_null(),
        }
        self.referrer_type.append(h.traffic.referrer_type.as_str());
        self.search_engine
            .set_option(row, h.traffic.search_engine, cap);
        for (n, v) in &h.post_evars {
            self.post_evars.keys().append_value(evar_key(*n));
            self.post_evars.values().append_value(v);
        }
        self.post_evars.append(true)?;
        let c = &h.commerce;
        append_events(
            &mut self.post_events,
            c.events.iter().map(|e| (e.name.as_str(), e.value)),
        );
        self.duplicate_purchase.append_value(c.duplicate_purchase);
        {
            let item = self.product_list.values();
            for p in c.products.iter() {
                item.field_builder::<StringBuilder>(0)
                    .expect("category")
                    .append_value(&p.category);
                item.field_builder::<StringBuilder>(1)
                    .expect("product")
                    .append_value(&p.name);
                item.field_builder::<Int64Builder>(2)
                    .expect("quantity")
                    .append_option(p.quantity.map(|q| q as i64));
                item.field_builder::<Float64Builder>(3)
                    .expect("price")
                    .append_option(p.price);
                append_events(
                    item.field_builder::<ListBuilder<StructBuilder>>(4)
                        .expect("events"),
                    p.events.iter().map(|(n, v)| (n.as_str(), Some(*v))),
                );
                let evars = item
                    .field_builder::<MapBuilder<StringBuilder, StringBuilder>>(5)
                    .expect("evars");
                for (n, v) in &p.evars {
                    evars.keys().append_value(evar_key(*n));
                    evars.values().append_value(v);
                }
                evars.append(true)?;
                item.append(true);
            }
            self.product_list.append(true);
        }
        self.revenue.append_option(c.revenue);
        self.units.append_option(c.units);
        self.orders.append_value(i32::from(c.order));
        self.rows += 1;
        Ok(())
    }

    /// Builds a record batch of the appended rows and resets the builders.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let rows = self.rows;
        let nulls = new_null_array(&DataType::Utf8, rows);
        let mut cols: Vec<ArrayRef> = vec![
            self.report_suite.finish(),
            Arc::new(self.hit_time.finish()),
            self.visitor_id.finish(),
            self.visitor_id_type.finish(),
            Arc::new(self.visit_num.finish()),
            Arc::new(self.visit_page_num.finish()),
            Arc::new(self.visit_start_time.finish()),
            Arc::new(self.new_visit.finish()),
            Arc::new(self.out_of_order.finish()),
            self.hit_type.finish(),
            self.page_name.finish(rows, &nulls),
            self.page_url.finish(rows, &nulls),
            self.link_name.finish(rows, &nulls),
            self.link_url.finish(rows, &nulls),
            Arc::new(self.events.finish()),
            self.file_id.finish(),
            Arc::new(self.row_number.finish()),
        ];
        for b in self
            .vars
            .iter_mut()
            .chain(&mut self.evars)
            .chain(&mut self.props)
            .chain(&mut self.hiers)
            .chain(&mut self.lists)
        {
            cols.push(b.finish(rows, &nulls));
        }
        cols.push(Arc::new(self.context_data.finish()));
        cols.push(Arc::new(self.customer_ids.finish()));
        cols.push(Arc::new(self.hints.finish()));
        // `schema::ADDED_COLUMNS`, in order.
        cols.push(self.browser.finish(rows, &nulls));
        cols.push(self.browser_version.finish(rows, &nulls));
        cols.push(self.os.finish(rows, &nulls));
        cols.push(self.os_version.finish(rows, &nulls));
        cols.push(self.device_type.finish(rows, &nulls));
        cols.push(Arc::new(self.is_bot.finish()));
        cols.push(self.referrer_type.finish());
        cols.push(self.search_engine.finish(rows, &nulls));
        cols.push(Arc::new(self.post_evars.finish()));
        cols.push(Arc::new(self.post_events.finish()));
        cols.push(Arc::new(self.duplicate_purchase.finish()));
        cols.push(Arc::new(self.product_list.finish()));
        cols.push(Arc::new(self.revenue.finish()));
        cols.push(Arc::new(self.units.finish()));
        cols.push(Arc::new(self.orders.finish()));
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), cols)
    }
}
