//! The raw stage of the config: the TOML file as written, before any value
//! is interpreted.
//!
//! Parsing happens in three steps so that one run reports every problem:
//! 1. `toml_edit` parses the text and keeps the byte span of every key.
//! 2. [`lint`] walks the document against [`SCHEMA`] and reports each unknown
//!    key (with the closest valid key, or the table it belongs in) and each
//!    value of the wrong TOML type, then removes them from the document.
//! 3. serde deserializes what is left into [`RawConfig`]
//!    (`deny_unknown_fields`, [`toml::Spanned`] leaves), which the validate
//!    stage turns into the typed [`Config`](super::Config).
//!
//! The schema and the serde structs describe the same keys; a unit test
//! asserts that they do.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml_edit::{Item, TableLike, Value};

use super::Problem;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub download_dir: Option<Spanned<String>>,
    pub lookback: Option<Spanned<String>>,
    pub time_zone: Option<Spanned<String>>,
    pub partial_grace: Option<Spanned<String>>,
    pub metrics_file: Option<Spanned<String>>,
    pub healthcheck_url: Option<Spanned<String>>,
    pub group_readable: Option<Spanned<bool>>,
    pub stale_after: Option<Spanned<String>>,
    #[serde(default)]
    pub api: RawApi,
    pub credentials: Option<RawCredentials>,
    #[serde(default)]
    pub transfer: RawTransfer,
    pub retention: Option<RawRetention>,
    pub schedule: Option<RawSchedule>,
    #[serde(default)]
    pub redis: Vec<RawRedis>,
    #[serde(default)]
    pub postgres: Vec<RawPostgres>,
}

/// `[api]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApi {
    pub endpoint: Option<Spanned<String>>,
    pub site: Option<Spanned<String>>,
    pub allow_http_downloads: Option<Spanned<bool>>,
    pub region: Option<Spanned<String>>,
    pub metadata_url: Option<Spanned<String>>,
}

/// `[credentials]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredentials {
    pub secret_id: Option<Spanned<String>>,
    pub secret_key: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
}

/// `[transfer]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTransfer {
    pub concurrency: Option<Spanned<i64>>,
    pub bandwidth_limit: Option<Spanned<String>>,
    pub segments: Option<Spanned<i64>>,
    pub segment_threshold: Option<Spanned<String>>,
    pub url_lifetime_hours: Option<Spanned<i64>>,
    pub free_space_margin: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub network: Option<Spanned<String>>,
}

/// `[retention]`, `[redis.retention]`, `[postgres.retention]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetention {
    pub keep_last: Option<Spanned<i64>>,
    pub keep_daily: Option<Spanned<i64>>,
    pub keep_weekly: Option<Spanned<i64>>,
    pub keep_monthly: Option<Spanned<i64>>,
    pub keep_within: Option<Spanned<String>>,
    pub keep_manual: Option<Spanned<bool>>,
}

/// `[schedule]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchedule {
    pub interval: Option<Spanned<String>>,
    pub jitter: Option<Spanned<String>>,
    pub daily_at: Option<Spanned<String>>,
}

/// One `[[redis]]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    pub instance_id: Option<Spanned<String>>,
    pub region: Option<Spanned<String>>,
    pub network: Option<Spanned<String>>,
    pub retention: Option<RawRetention>,
}

/// One `[[postgres]]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPostgres {
    pub instance_id: Option<Spanned<String>>,
    pub region: Option<Spanned<String>>,
    pub network: Option<Spanned<String>>,
    pub backup_types: Option<Spanned<Vec<Spanned<String>>>>,
    pub retention: Option<RawRetention>,
}

/// The TOML type a key must have.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    Str,
    Int,
    Bool,
    StrArray,
    Table(&'static Section),
    TableArray(&'static Section),
}

/// One table of the schema: its name as shown to users and its keys, each
/// with its shape and an example value used in the suggested fix.
#[derive(Debug)]
pub(crate) struct Section {
    pub title: &'static str,
    pub keys: &'static [(&'static str, Shape, &'static str)],
}

impl Section {
    /// "in [retention]", or "at the top level".
    fn place(&self) -> String {
        if self.title == SCHEMA.title {
            format!("at {}", self.title)
        } else {
            format!("in {}", self.title)
        }
    }
}

const RETENTION: Section = Section {
    title: "[retention]",
    keys: &[
        ("keep_last", Shape::Int, "7"),
        ("keep_daily", Shape::Int, "7"),
        ("keep_weekly", Shape::Int, "4"),
        ("keep_monthly", Shape::Int, "6"),
        ("keep_within", Shape::Str, "\"14d\""),
        ("keep_manual", Shape::Bool, "true"),
    ],
};

const REDIS_RETENTION: Section = Section {
    title: "[redis.retention]",
    keys: RETENTION.keys,
};

const POSTGRES_RETENTION: Section = Section {
    title: "[postgres.retention]",
    keys: RETENTION.keys,
};

const API: Section = Section {
    title: "[api]",
    keys: &[
        (
            "endpoint",
            Shape::Str,
            "\"https://redis.tencentcloudapi.com\"",
        ),
        ("site", Shape::Str, "\"china\""),
        ("allow_http_downloads", Shape::Bool, "false"),
        ("region", Shape::Str, "\"ap-guangzhou\""),
        (
            "metadata_url",
            Shape::Str,
            "\"http://metadata.tencentyun.com/latest/meta-data/\"",
        ),
    ],
};

const CREDENTIALS: Section = Section {
    title: "[credentials]",
    keys: &[
        ("secret_id", Shape::Str, "\"AKID...\""),
        ("secret_key", Shape::Str, "\"...\""),
        ("token", Shape::Str, "\"...\""),
    ],
};

const TRANSFER: Section = Section {
    title: "[transfer]",
    keys: &[
        ("concurrency", Shape::Int, "4"),
        ("bandwidth_limit", Shape::Str, "\"100MiB/s\""),
        ("segments", Shape::Int, "4"),
        ("segment_threshold", Shape::Str, "\"64MiB\""),
        ("url_lifetime_hours", Shape::Int, "12"),
        ("free_space_margin", Shape::Str, "\"1GiB\""),
        ("idle_timeout", Shape::Str, "\"60s\""),
        ("network", Shape::Str, "\"intranet\""),
    ],
};

const SCHEDULE: Section = Section {
    title: "[schedule]",
    keys: &[
        ("interval", Shape::Str, "\"6h\""),
        ("jitter", Shape::Str, "\"10m\""),
        ("daily_at", Shape::Str, "\"03:30\""),
    ],
};

const REDIS: Section = Section {
    title: "[[redis]]",
    keys: &[
        ("instance_id", Shape::Str, "\"crs-4y9t57vt\""),
        ("region", Shape::Str, "\"ap-guangzhou\""),
        ("network", Shape::Str, "\"intranet\""),
        ("retention", Shape::Table(&REDIS_RETENTION), ""),
    ],
};

const POSTGRES: Section = Section {
    title: "[[postgres]]",
    keys: &[
        ("instance_id", Shape::Str, "\"postgres-oamgybor\""),
        ("region", Shape::Str, "\"ap-guangzhou\""),
        ("network", Shape::Str, "\"intranet\""),
        ("backup_types", Shape::StrArray, "[\"base\", \"log\"]"),
        ("retention", Shape::Table(&POSTGRES_RETENTION), ""),
    ],
};

/// Every key the config accepts, by table.
pub(crate) const SCHEMA: Section = Section {
    title: "the top level",
    keys: &[
        ("download_dir", Shape::Str, "\"/var/lib/tcbackup\""),
        ("lookback", Shape::Str, "\"7d\""),
        ("time_zone", Shape::Str, "\"+08:00\""),
        ("partial_grace", Shape::Str, "\"7d\""),
        (
            "metrics_file",
            Shape::Str,
            "\"/var/lib/node_exporter/tcbackup.prom\"",
        ),
        (
            "healthcheck_url",
            Shape::Str,
            "\"https://hc-ping.com/<uuid>\"",
        ),
        ("group_readable", Shape::Bool, "true"),
        ("stale_after", Shape::Str, "\"2d\""),
        ("api", Shape::Table(&API), ""),
        ("credentials", Shape::Table(&CREDENTIALS), ""),
        ("transfer", Shape::Table(&TRANSFER), ""),
        ("retention", Shape::Table(&RETENTION), ""),
        ("schedule", Shape::Table(&SCHEDULE), ""),
        ("redis", Shape::TableArray(&REDIS), ""),
        ("postgres", Shape::TableArray(&POSTGRES), ""),
    ],
};

/// Byte offsets of line starts, to turn a span into a 1-based line number.
#[derive(Debug)]
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Self { starts }
    }

    /// The 1-based line holding byte `offset`.
    pub fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(exact) => exact + 1,
            Err(insert_at) => insert_at,
        }
    }

    /// The line of a span, when there is one.
    pub fn line_of(&self, span: Option<Range<usize>>) -> Option<usize> {
        span.map(|span| self.line(span.start))
    }
}

/// What the lint learned besides problems: the line of each table, keyed
/// by path (`retention`, `redis[0]`, `redis[0].retention`), so that later
/// messages about a missing key can point at the table that lacks it.
#[derive(Debug, Default)]
pub(crate) struct TableLines {
    lines: BTreeMap<String, usize>,
    /// Per table path, the keys the lint removed, each as the key the user
    /// probably meant (the suggestion for a typo, the key itself for a
    /// wrong type), so that a later "missing key" is not reported twice.
    removed: BTreeMap<String, Vec<String>>,
}

impl TableLines {
    /// The line of the table at `path`, if it was written in the file.
    pub fn get(&self, path: &str) -> Option<usize> {
        self.lines.get(path).copied()
    }

    /// Whether the lint removed any key of the table at `path`.
    pub fn removed_any(&self, path: &str) -> bool {
        self.removed.get(path).is_some_and(|keys| !keys.is_empty())
    }

    /// Whether the lint removed a key of the table at `path` that was
    /// probably meant to be `key`.
    pub fn removed_meant(&self, path: &str, key: &str) -> bool {
        self.removed
            .get(path)
            .is_some_and(|keys| keys.iter().any(|meant| meant == key))
    }

    fn record_removal(&mut self, path: &str, meant: &str) {
        self.removed
            .entry(path.to_string())
            .or_default()
            .push(meant.to_string());
    }
}

/// Check every key of `table` against `SCHEMA`: report unknown keys and
/// wrongly typed values (adding them to `problems`) and remove them, so
/// that the rest can still be deserialized and validated.
pub(crate) fn lint(
    table: &mut toml_edit::Table,
    lines: &LineIndex,
    problems: &mut Vec<Problem>,
) -> TableLines {
    let mut table_lines = TableLines::default();
    lint_table(table, &SCHEMA, "", lines, problems, &mut table_lines);
    table_lines
}

fn lint_table(
    table: &mut dyn TableLike,
    section: &'static Section,
    path: &str,
    lines: &LineIndex,
    problems: &mut Vec<Problem>,
    table_lines: &mut TableLines,
) {
    let keys: Vec<String> = table.iter().map(|(key, _)| key.to_string()).collect();
    for key in keys {
        let key_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let Some((key_repr, item)) = table.get_key_value(&key) else {
            continue;
        };
        let line = lines.line_of(key_repr.span());
        let Some(&(_, shape, example)) = section.keys.iter().find(|(name, _, _)| *name == key)
        else {
            problems.push(Problem::new(
                line,
                key_path,
                unknown_key_message(&key, section),
            ));
            let names: Vec<&str> = section.keys.iter().map(|(name, _, _)| *name).collect();
            let meant = closest_name(&key, &names).unwrap_or(&key);
            table_lines.record_removal(path, meant);
            table.remove(&key);
            continue;
        };
        let found = describe(item);
        let ok = match shape {
            Shape::Str => matches!(item.as_value(), Some(Value::String(_))),
            Shape::Int => matches!(item.as_value(), Some(Value::Integer(_))),
            Shape::Bool => matches!(item.as_value(), Some(Value::Boolean(_))),
            Shape::StrArray => item
                .as_array()
                .is_some_and(|array| array.iter().all(|v| matches!(v, Value::String(_)))),
            Shape::Table(_) => item.is_table_like(),
            Shape::TableArray(_) => {
                item.is_array_of_tables()
                    || item
                        .as_array()
                        .is_some_and(|array| array.iter().all(|v| v.is_inline_table()))
            }
        };
        if !ok {
            let message = match shape {
                Shape::Table(sub) => {
                    format!("`{key}` must be a table {}, found {found}", sub.title)
                }
                Shape::TableArray(sub) => format!(
                    "`{key}` must be a list of tables written as {}, found {found}",
                    sub.title
                ),
                Shape::StrArray => format!(
                    "`{key}` {} must be a list of strings, found {found}; write {key} = {example}",
                    section.place()
                ),
                Shape::Str | Shape::Int | Shape::Bool => {
                    let wanted = match shape {
                        Shape::Str => "a string",
                        Shape::Int => "an integer",
                        _ => "true or false",
                    };
                    let hint = if matches!(item.as_value(), Some(Value::Datetime(_))) {
                        " (times must be quoted)"
                    } else {
                        ""
                    };
                    format!(
                        "`{key}` {} must be {wanted}, found {found}{hint}; write {key} = {example}",
                        section.place()
                    )
                }
            };
            problems.push(Problem::new(line, key_path, message));
            table_lines.record_removal(path, &key);
            table.remove(&key);
            continue;
        }
        match shape {
            Shape::Table(sub) => {
                let span = item.span().or_else(|| key_repr.span());
                if let Some(line) = lines.line_of(span) {
                    table_lines.lines.insert(key_path.clone(), line);
                }
                if let Some(sub_table) = table.get_mut(&key).and_then(Item::as_table_like_mut) {
                    lint_table(sub_table, sub, &key_path, lines, problems, table_lines);
                }
            }
            Shape::TableArray(sub) => {
                let Some(item) = table.get_mut(&key) else {
                    continue;
                };
                let mut elements: Vec<(Option<Range<usize>>, &mut dyn TableLike)> = Vec::new();
                if item.is_array_of_tables() {
                    if let Some(array) = item.as_array_of_tables_mut() {
                        for element in array.iter_mut() {
                            elements.push((element.span(), element));
                        }
                    }
                } else if let Some(array) = item.as_array_mut() {
                    for element in array.iter_mut().filter_map(Value::as_inline_table_mut) {
                        elements.push((element.span(), element));
                    }
                }
                for (index, (span, element)) in elements.into_iter().enumerate() {
                    let element_path = format!("{key_path}[{index}]");
                    if let Some(line) = lines.line_of(span) {
                        table_lines.lines.insert(element_path.clone(), line);
                    }
                    lint_table(element, sub, &element_path, lines, problems, table_lines);
                }
            }
            Shape::Str | Shape::Int | Shape::Bool | Shape::StrArray => {}
        }
    }
}

fn describe(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "a list of tables",
        Item::Value(value) => match value {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime(_) => "a date-time",
            Value::Array(_) => "a list",
            Value::InlineTable(_) => "a table",
        },
    }
}

/// The message for an unknown key: the closest valid key of this table when
/// one is close, or the table where the key belongs when it is valid there,
/// then the full list.
fn unknown_key_message(key: &str, section: &Section) -> String {
    let names: Vec<&str> = section.keys.iter().map(|(name, _, _)| *name).collect();
    let mut message = format!("unknown key `{key}` {}", section.place());
    if let Some(closest) = closest_name(key, &names) {
        message.push_str(&format!(" (did you mean `{closest}`?)"));
    } else if let Some(home) = section_holding(key, &SCHEMA) {
        message.push_str(&format!(" (it belongs in {home})"));
    }
    message.push_str(&format!("; expected one of {}", names.join(", ")));
    message
}

/// The closest name within a small edit distance (a typo, `-` for `_`,
/// a different case), if any.
pub(crate) fn closest_name<'a>(key: &str, names: &[&'a str]) -> Option<&'a str> {
    let normalized = key.to_ascii_lowercase().replace('-', "_");
    names
        .iter()
        .map(|name| (edit_distance(&normalized, name), *name))
        .filter(|(distance, name)| *distance <= (name.len() / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// The title of a table (other than the top level) that accepts `key`.
fn section_holding(key: &str, section: &'static Section) -> Option<&'static str> {
    for (_, shape, _) in section.keys {
        let sub = match shape {
            Shape::Table(sub) | Shape::TableArray(sub) => sub,
            _ => continue,
        };
        if sub.keys.iter().any(|(name, _, _)| *name == key) {
            return Some(sub.title);
        }
        if let Some(found) = section_holding(key, sub) {
            return Some(found);
        }
    }
    None
}

/// Levenshtein distance over bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.bytes().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{self, Visitor};

    /// A deserializer that only records the field names serde asks for, so
    /// the test below can compare the serde structs with the schema.
    struct FieldNames<'a>(&'a mut &'static [&'static str]);

    #[derive(Debug)]
    struct Stop;

    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }

    impl std::error::Error for Stop {}

    impl de::Error for Stop {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Stop
        }
    }

    impl<'de> de::Deserializer<'de> for FieldNames<'_> {
        type Error = Stop;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    fn fields_of<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
        let mut fields: &'static [&'static str] = &[];
        let _ = T::deserialize(FieldNames(&mut fields));
        fields.to_vec()
    }

    fn schema_names(section: &Section) -> Vec<&'static str> {
        section.keys.iter().map(|(name, _, _)| *name).collect()
    }

    #[test]
    fn schema_matches_the_serde_structs() {
        assert_eq!(schema_names(&SCHEMA), fields_of::<RawConfig>());
        assert_eq!(schema_names(&API), fields_of::<RawApi>());
        assert_eq!(schema_names(&CREDENTIALS), fields_of::<RawCredentials>());
        assert_eq!(schema_names(&TRANSFER), fields_of::<RawTransfer>());
        assert_eq!(schema_names(&RETENTION), fields_of::<RawRetention>());
        assert_eq!(schema_names(&SCHEDULE), fields_of::<RawSchedule>());
        assert_eq!(schema_names(&REDIS), fields_of::<RawRedis>());
        assert_eq!(schema_names(&POSTGRES), fields_of::<RawPostgres>());
    }

    #[test]
    fn suggests_the_closest_key() {
        let names = schema_names(&RETENTION);
        assert_eq!(closest_name("keep_lst", &names), Some("keep_last"));
        assert_eq!(closest_name("keep-daily", &names), Some("keep_daily"));
        assert_eq!(closest_name("KEEP_WEEKLY", &names), Some("keep_weekly"));
        assert_eq!(closest_name("concurrency", &names), None);
    }

    #[test]
    fn unknown_key_in_the_wrong_table_points_to_its_home() {
        let message = unknown_key_message("concurrency", &SCHEMA);
        assert!(
            message.starts_with(
                "unknown key `concurrency` at the top level (it belongs in [transfer]);"
            ),
            "{message}"
        );
    }

    #[test]
    fn lines_are_one_based() {
        let index = LineIndex::new("a\nbc\n\nd");
        assert_eq!(index.line(0), 1);
        assert_eq!(index.line(2), 2);
        assert_eq!(index.line(3), 2);
        assert_eq!(index.line(5), 3);
        assert_eq!(index.line(6), 4);
    }
}
