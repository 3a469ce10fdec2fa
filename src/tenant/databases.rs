//! What agency knows of the database engines a stack runs (SPEC §11): how to dump one
//! consistently, load a dump back, count each database's tables, tell an empty server, and
//! start a throwaway one of the same image. A service is a database by its stack label
//! `agency.db` (`mariadb`, `mysql`, `postgres`, `postgresql`).
//!
//! Every script below is fixed text run with `sh -c` inside the container; the only
//! arguments are the admin user's name (checked); the password reaches the tool by
//! environment (`MYSQL_PWD`, `PGPASSWORD`) handed over by `docker exec -e`.
//!
//! - MariaDB/MySQL: `mariadb-dump --single-transaction` (one consistent read view of InnoDB
//!   tables, no lock held) of every database but the server's own (`mysql`, `sys`, the
//!   schema views): the users and their passwords are the stack's, so a restore never brings
//!   back a password an earlier rotation replaced.
//! - PostgreSQL: `pg_dumpall --no-role-passwords` (each database in one snapshot of its own;
//!   roles without their passwords, for the same reason).

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use sha2::{Digest, Sha256};

/// The Docker label marking a database service, its value the engine.
pub const LABEL_DB: &str = "agency.db";
/// The label naming the PostgreSQL superuser (default `postgres`; MySQL's is `root`).
pub const LABEL_DB_ADMIN: &str = "agency.db-admin";
/// The label naming the data directory inside the container, when not the engine's default.
pub const LABEL_DB_DATA: &str = "agency.db-data";
/// The secrets.env key of the database superuser's password.
pub const ROOT_PASSWORD_KEY: &str = "DB_ROOT_PASSWORD";

/// A database engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// MariaDB and MySQL (the same tools and dump format).
    MariaDb,
    Postgres,
}

const MARIADB_DUMP: &str = r#"set -eu
user="$1"
dump=mariadb-dump; command -v mariadb-dump >/dev/null 2>&1 || dump=mysqldump
client=mariadb; command -v mariadb >/dev/null 2>&1 || client=mysql
names=$("$client" --user="$user" --batch --skip-column-names --execute='SHOW DATABASES')
set --
while IFS= read -r db; do
  case "$db" in information_schema|performance_schema|mysql|sys|'') ;; *) set -- "$@" "$db" ;; esac
done <<EOF
$names
EOF
if [ "$#" -eq 0 ]; then echo '-- agency: no database to dump'; exit 0; fi
exec "$dump" --user="$user" --single-transaction --quick --routines --events --triggers --hex-blob \
  --skip-dump-date --databases "$@"
"#;

const MARIADB_TABLES: &str = r#"set -eu
client=mariadb; command -v mariadb >/dev/null 2>&1 || client=mysql
exec "$client" --user="$1" --batch --skip-column-names --execute="SELECT s.schema_name, COUNT(t.table_name)
  FROM information_schema.schemata s LEFT JOIN information_schema.tables t
  ON t.table_schema = s.schema_name AND t.table_type = 'BASE TABLE'
  WHERE s.schema_name NOT IN ('information_schema', 'performance_schema', 'mysql', 'sys')
  GROUP BY s.schema_name"
"#;

/// `$2` = 1: every database but the server's own is dropped first (FORCE).
const MARIADB_LOAD: &str = r#"set -eu
user="$1"
client=mariadb; command -v mariadb >/dev/null 2>&1 || client=mysql
if [ "$2" = 1 ]; then
  "$client" --user="$user" --batch --skip-column-names --execute='SHOW DATABASES' </dev/null |
  while IFS= read -r db; do
    case "$db" in information_schema|performance_schema|mysql|sys|'') ;;
      *) printf 'DROP DATABASE `%s`;\n' "$(printf '%s' "$db" | sed 's/`/``/g')" ;; esac
  done | "$client" --user="$user" --batch
fi
exec "$client" --user="$user" --batch
"#;

const POSTGRES_DUMP: &str = r#"set -eu
exec pg_dumpall --no-role-passwords -U "$1"
"#;

/// (No pipe: a failed login must fail the script, not vanish in a pipeline's status.)
const POSTGRES_TABLES: &str = r#"set -eu
names=$(psql -X -w -At -U "$1" -d postgres -c 'SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate')
while IFS= read -r db; do
  [ -n "$db" ] || continue
  count=$(psql -X -w -At -U "$1" -d "$db" -c "SELECT count(*) FROM information_schema.tables
    WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')" </dev/null)
  printf '%s\t%s\n' "$db" "$count"
done <<EOF
$names
EOF
"#;

/// `$2` = 1: every database but `postgres` and the templates is dropped first (FORCE).
/// Errors do not stop the load (roles of the dump exist already); the caller judges them.
const POSTGRES_LOAD: &str = r#"set -eu
if [ "$2" = 1 ]; then
  psql -X -w -At -U "$1" -d postgres -c "SELECT format('DROP DATABASE %I WITH (FORCE);', datname)
    FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'" </dev/null |
  psql -X -w -q -v ON_ERROR_STOP=1 -U "$1" -d postgres
fi
exec psql -X -w -q -U "$1" -d postgres
"#;

impl Engine {
    /// The engine a label value names.
    pub fn from_label(value: &str) -> Option<Engine> {
        match value {
            "mariadb" | "mysql" => Some(Engine::MariaDb),
            "postgres" | "postgresql" => Some(Engine::Postgres),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::MariaDb => "mariadb",
            Engine::Postgres => "postgres",
        }
    }

    /// Where the server keeps its files in the official images (and the test images).
    pub fn default_data_dir(self) -> &'static str {
        match self {
            Engine::MariaDb => "/var/lib/mysql",
            Engine::Postgres => "/var/lib/postgresql/data",
        }
    }

    /// The superuser, unless the container's label names another.
    pub fn admin(self, label: Option<&str>) -> Result<String> {
        let name = match (self, label) {
            (Engine::Postgres, Some(name)) if !name.is_empty() => name,
            (Engine::Postgres, _) => "postgres",
            (Engine::MariaDb, _) => "root",
        };
        if name.len() > 63 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
            bail!("label {LABEL_DB_ADMIN} must name a database user (letters, digits, _ - .), got {name:?}");
        }
        Ok(name.to_string())
    }

    /// The variable the client tools read the password from.
    pub fn password_variable(self) -> &'static str {
        match self {
            Engine::MariaDb => "MYSQL_PWD",
            Engine::Postgres => "PGPASSWORD",
        }
    }

    /// The variable a new container of the image takes its superuser's password from.
    pub fn init_password_variable(self) -> &'static str {
        match self {
            Engine::MariaDb => "MARIADB_ROOT_PASSWORD",
            Engine::Postgres => "POSTGRES_PASSWORD",
        }
    }

    /// The dump, table-count and load scripts.
    fn scripts(self) -> [&'static str; 3] {
        match self {
            Engine::MariaDb => [MARIADB_DUMP, MARIADB_TABLES, MARIADB_LOAD],
            Engine::Postgres => [POSTGRES_DUMP, POSTGRES_TABLES, POSTGRES_LOAD],
        }
    }

    /// The command (inside the container) writing a consistent dump to stdout.
    pub fn dump_argv(self, admin: &str) -> Vec<String> {
        ["sh", "-c", self.scripts()[0], "sh", admin].map(String::from).to_vec()
    }

    /// The command printing `database<TAB>tables` lines of the user databases.
    pub fn tables_argv(self, admin: &str) -> Vec<String> {
        ["sh", "-c", self.scripts()[1], "sh", admin].map(String::from).to_vec()
    }

    /// The command loading a dump from stdin; `replace` drops the user databases first.
    pub fn load_argv(self, admin: &str, replace: bool) -> Vec<String> {
        let replace = if replace { "1" } else { "0" };
        ["sh", "-c", self.scripts()[2], "sh", admin, replace].map(String::from).to_vec()
    }

    /// The errors of a load that matter: PostgreSQL's loads go on past errors, and the roles
    /// a dump creates exist on any server of the stack already.
    pub fn load_errors(self, stderr: &str) -> Vec<String> {
        stderr
            .lines()
            .map(str::trim)
            .filter(|line| line.contains("ERROR"))
            .filter(|line| !(self == Engine::Postgres && line.contains("role \"") && line.ends_with("already exists")))
            .map(String::from)
            .collect()
    }
}

/// `database<TAB>count` lines into a map.
pub fn parse_table_counts(text: &str) -> Result<BTreeMap<String, u64>> {
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((name, count)) = line.rsplit_once('\t') else { bail!("unexpected table count line {line:?}") };
        let Ok(count) = count.trim().parse() else { bail!("unexpected table count line {line:?}") };
        counts.insert(name.to_string(), count);
    }
    Ok(counts)
}

/// Whether a server holds anything a restore would overwrite: a table in a user database.
pub fn is_empty(counts: &BTreeMap<String, u64>) -> bool {
    counts.values().all(|n| *n == 0)
}

/// Reads a dump as it streams past: its SHA-256 and, per database, the tables it creates.
/// Only the first bytes of each line are looked at (a line of row data may be megabytes).
#[derive(Debug, Clone)]
pub struct DumpReader {
    engine: Engine,
    hasher: Sha256,
    line: Vec<u8>,
    database: Option<String>,
    tables: BTreeMap<String, u64>,
}

/// Enough of a line for `USE`, `\connect` and `CREATE TABLE` with a long database name.
const LINE_HEAD: usize = 512;

impl DumpReader {
    pub fn new(engine: Engine) -> Self {
        Self { engine, hasher: Sha256::new(), line: Vec::new(), database: None, tables: BTreeMap::new() }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        let mut rest = chunk;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            self.take(&rest[..end]);
            self.finish_line();
            rest = &rest[end + 1..];
        }
        self.take(rest);
    }

    fn take(&mut self, bytes: &[u8]) {
        let room = LINE_HEAD.saturating_sub(self.line.len());
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn finish_line(&mut self) {
        // Most lines are row data: only a line that can switch the database or create a table
        // is decoded (a dump has one line per row).
        if !self.may_matter(&self.line) {
            self.line.clear();
            return;
        }
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if let Some(database) = self.database_switch(&line) {
            if let Some(name) = &database {
                self.tables.entry(name.clone()).or_insert(0);
            }
            self.database = database;
        } else if self.creates_table(&line)
            && let Some(database) = &self.database
        {
            *self.tables.entry(database.clone()).or_insert(0) += 1;
        }
    }

    fn may_matter(&self, line: &[u8]) -> bool {
        let heads: &[&[u8]] = match self.engine {
            Engine::MariaDb => &[b"USE `", b"CREATE TABLE `"],
            Engine::Postgres => &[b"\\connect ", b"CREATE TABLE ", b"CREATE UNLOGGED TABLE "],
        };
        heads.iter().any(|head| line.starts_with(head))
    }

    /// The database a line switches to: `Some(None)` for a template, whose tables count
    /// nowhere.
    fn database_switch(&self, line: &str) -> Option<Option<String>> {
        match self.engine {
            Engine::MariaDb => {
                let name = line.strip_prefix("USE `")?.strip_suffix("`;")?;
                Some(Some(name.replace("``", "`")))
            }
            Engine::Postgres => {
                let target = line.strip_prefix("\\connect ")?.trim();
                let name = match target.strip_prefix("-reuse-previous=on ") {
                    Some(conninfo) => {
                        let inner = conninfo.trim_matches('"').strip_prefix("dbname='")?.strip_suffix('\'')?;
                        inner.replace("\\'", "'").replace("\\\\", "\\")
                    }
                    None if target.starts_with('"') => target.trim_matches('"').replace("\"\"", "\""),
                    None => target.to_string(),
                };
                // Templates are no user database (the table counts leave them out too).
                Some(Some(name).filter(|n| n != "template1" && n != "template0"))
            }
        }
    }

    fn creates_table(&self, line: &str) -> bool {
        match self.engine {
            Engine::MariaDb => line.starts_with("CREATE TABLE `"),
            Engine::Postgres => line.starts_with("CREATE TABLE ") || line.starts_with("CREATE UNLOGGED TABLE "),
        }
    }

    /// The hex SHA-256 of everything fed, and the tables per database.
    pub fn finish(mut self) -> (String, BTreeMap<String, u64>) {
        if !self.line.is_empty() {
            self.finish_line();
        }
        let digest = self.hasher.finalize();
        let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
        (hex, self.tables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(engine: Engine, text: &str, chunk: usize) -> BTreeMap<String, u64> {
        let mut reader = DumpReader::new(engine);
        for part in text.as_bytes().chunks(chunk) {
            reader.feed(part);
        }
        reader.finish().1
    }

    #[test]
    fn counts_the_tables_of_each_database_of_a_mariadb_dump() {
        let dump = "-- MariaDB dump\nCREATE DATABASE /*!32312 IF NOT EXISTS*/ `wordpress`;\nUSE `wordpress`;\n\
                    DROP TABLE IF EXISTS `a`;\nCREATE TABLE `a` (\n  `v` int\n);\nINSERT INTO `a` VALUES (1),(2);\n\
                    CREATE TABLE `b` (x int);\n/*!50001 CREATE VIEW `v` AS SELECT 1 */;\nUSE `we``ird`;\nUSE `empty`;\n\
                    USE `we``ird`;\nCREATE TABLE `c` (x int);";
        for chunk in [1, 7, 4096] {
            let counts = read(Engine::MariaDb, dump, chunk);
            assert_eq!(counts, BTreeMap::from([("wordpress".into(), 2), ("we`ird".into(), 1), ("empty".into(), 0)]));
        }
    }

    #[test]
    fn counts_the_tables_of_each_database_of_pg_dumpall() {
        let dump = "\\connect postgres\n\\connect template1\nCREATE TABLE public.t (x int);\n\
                    CREATE DATABASE app WITH TEMPLATE = template0;\n\\connect app\nCREATE TABLE public.items (\n    id integer\n);\n\
                    CREATE UNLOGGED TABLE public.cache (k text);\nCOPY public.items (id) FROM stdin;\n1\n\\.\n\
                    \\connect -reuse-previous=on \"dbname='it\\'s'\"\n\\connect \"Odd\"\nCREATE TABLE x.y (z int);\n";
        let counts = read(Engine::Postgres, dump, 5);
        assert_eq!(
            counts,
            BTreeMap::from([("postgres".into(), 0), ("app".into(), 2), ("it's".into(), 0), ("Odd".into(), 1)])
        );
    }

    #[test]
    fn a_row_longer_than_the_head_is_neither_kept_nor_misread() {
        let long = format!("USE `db`;\nINSERT INTO `t` VALUES ('{}CREATE TABLE `x`');\n", "a".repeat(100_000));
        let mut reader = DumpReader::new(Engine::MariaDb);
        reader.feed(long.as_bytes());
        assert!(reader.line.is_empty());
        assert_eq!(reader.finish().1, BTreeMap::from([("db".into(), 0)]));
    }

    #[test]
    fn table_counts_and_load_errors_parse() {
        let counts = parse_table_counts("wordpress\t12\nempty\t0\n").unwrap();
        assert!(!is_empty(&counts));
        assert!(is_empty(&parse_table_counts("empty\t0\n").unwrap()));
        assert!(parse_table_counts("garbage").is_err());
        let stderr = "ERROR:  role \"postgres\" already exists\nERROR:  relation \"items\" already exists\n";
        assert_eq!(Engine::Postgres.load_errors(stderr), ["ERROR:  relation \"items\" already exists"]);
        assert!(Engine::MariaDb.admin(None).unwrap() == "root");
        assert!(Engine::Postgres.admin(Some("bad name")).is_err());
    }
}
