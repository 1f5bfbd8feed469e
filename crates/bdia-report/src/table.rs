//! [`PartsTable`]: a DataFusion table over exactly the Parquet parts that
//! [`bdia_lake::LakeReader`] listed, read through the lake's object store.
//!
//! Every part carries its partition day as the `date` column (Date32): the
//! hit's calendar day in the suite's time zone, from the part's directory.
//! No listing happens at query time, so an object that is not committed can
//! never be read.

use std::sync::Arc;

use async_trait::async_trait;
use bdia_lake::PartRef;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;

/// Name of the partition column.
pub const DATE_COLUMN: &str = "date";

/// Days between 0001-01-01 and 1970-01-01 are not needed: Date32 counts
/// days since the Unix epoch.
pub(crate) fn date32(d: jiff::civil::Date) -> i32 {
    let epoch = jiff::civil::date(1970, 1, 1);
    epoch.until(d).map(|s| s.get_days()).unwrap_or(0)
}

/// The inverse of [`date32`].
pub(crate) fn from_date32(days: i32) -> jiff::civil::Date {
    jiff::civil::date(1970, 1, 1)
        .checked_add(jiff::Span::new().days(i64::from(days)))
        .unwrap_or(jiff::civil::date(1970, 1, 1))
}

/// The lake's schema with every top-level string column read as
/// `Utf8View`: the Parquet reader then decodes strings into views (no
/// copy of the bytes into one contiguous buffer), and grouping and
/// comparing compare views.
fn view_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Arc<Field>> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8View)),
            _ => f.clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A table over a fixed list of committed parts.
#[derive(Debug)]
pub struct PartsTable {
    url: ObjectStoreUrl,
    file_schema: SchemaRef,
    schema: SchemaRef,
    parts: Vec<PartRef>,
}

impl PartsTable {
    /// A table reading `parts` from the object store registered at `url`.
    pub fn new(url: ObjectStoreUrl, parts: Vec<PartRef>) -> PartsTable {
        let file_schema = view_schema(&bdia_lake::hits_schema());
        let mut fields: Vec<Arc<Field>> = file_schema.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(DATE_COLUMN, DataType::Date32, false)));
        PartsTable {
            url,
            file_schema,
            schema: Arc::new(Schema::new(fields)),
            parts,
        }
    }

    fn date_field() -> Arc<Field> {
        Arc::new(Field::new(DATE_COLUMN, DataType::Date32, false))
    }
}

#[async_trait]
impl TableProvider for PartsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.parts.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        // Spread the parts over the target partitions, largest first onto
        // the least loaded group; the optimizer may split big files further.
        let n = state
            .config()
            .target_partitions()
            .max(1)
            .min(self.parts.len());
        let mut order: Vec<&PartRef> = self.parts.iter().collect();
        order.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.path.cmp(&b.path)));
        let mut groups: Vec<(u64, Vec<PartitionedFile>)> = vec![(0, Vec::new()); n];
        for p in order {
            let g = groups
                .iter_mut()
                .min_by_key(|(load, _)| *load)
                .expect("at least one group");
            g.0 += p.bytes;
            g.1.push(
                PartitionedFile::new(p.path.to_string(), p.bytes)
                    .with_partition_values(vec![ScalarValue::Date32(Some(date32(p.date)))]),
            );
        }
        let table_schema = TableSchema::builder(self.file_schema.clone())
            .with_table_partition_cols(vec![Self::date_field()])
            .build();
        let source = Arc::new(ParquetSource::new(table_schema));
        let config = FileScanConfigBuilder::new(self.url.clone(), source)
            .with_file_groups(groups.into_iter().map(|(_, g)| FileGroup::new(g)).collect())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        format.create_physical_plan(state, config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date32_round_trips() {
        for d in ["1970-01-01", "2026-03-08", "1969-12-31", "2400-02-29"] {
            let d: jiff::civil::Date = d.parse().unwrap();
            assert_eq!(from_date32(date32(d)), d);
        }
        assert_eq!(date32(jiff::civil::date(1970, 1, 2)), 1);
    }
}
