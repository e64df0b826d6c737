//! The routine-load statements as the engine runs them: the job's database resolved, and the
//! privileges checked (managing a job needs ALL on the table it loads).

use crate::access::{Access, Privilege};
use crate::mysql::error::MysqlError;
use crate::mysql::server::{Response, Session};

use super::{nullable_rows, wh, Engine};

impl Engine {
    /// CREATE / ALTER / PAUSE / RESUME / STOP / SHOW ROUTINE LOAD.
    pub(super) async fn routine_load(
        &self,
        session: &Session,
        access: &Access,
        sql: &str,
    ) -> Result<Option<Response>, MysqlError> {
        use crate::load::stmt::{self, LoadStatement};
        let Some(statement) = stmt::parse(sql).map_err(|e| wh(e.into()))? else { return Ok(None) };
        let db_of = |db: Option<String>| -> Result<String, MysqlError> {
            let db = db.or_else(|| session.database.clone()).ok_or_else(MysqlError::no_database_selected)?;
            access.require_sees_database(&db)?;
            if !self.warehouse.database_exists(&db) {
                return Err(MysqlError::unknown_database(&db));
            }
            Ok(db)
        };
        match statement {
            // Managing a job needs ALL on its table; seeing it, some privilege on that table.
            LoadStatement::Create(c) => {
                let db = db_of(c.db.clone())?;
                access.require(Privilege::All, "CREATE ROUTINE LOAD", &db, &c.table)?;
                self.loads.create(&db, c, sql).await.map_err(wh)?;
            }
            LoadStatement::Alter(a) => {
                let db = db_of(a.db.clone())?;
                self.require_on_job(access, &db, &a.name, "ALTER ROUTINE LOAD")?;
                self.loads.alter(&db, a).await.map_err(wh)?;
            }
            LoadStatement::Control { action, db, name } => {
                let db = db_of(db)?;
                self.require_on_job(access, &db, &name, "ROUTINE LOAD")?;
                self.loads.control(&db, &name, action).await.map_err(wh)?;
            }
            LoadStatement::Show { all, db, name } => {
                let db = db_of(db)?;
                let (names, mut r) = self.loads.show(&db, name.as_deref(), all);
                let table_column = names.iter().position(|n| *n == "TableName");
                r.retain(|row| table_column.and_then(|c| row[c].as_deref()).is_some_and(|t| access.sees_table(&db, t)));
                return Ok(Some(nullable_rows(&names, r)));
            }
        }
        Ok(Some(Response::ok()))
    }

    /// ALL on the table a routine-load job loads (ALL on the database for an unknown job, so
    /// that its absence is reported only to whoever could have created it).
    fn require_on_job(&self, access: &Access, db: &str, job: &str, command: &str) -> Result<(), MysqlError> {
        match self.loads.job(db, job) {
            Some(j) => access.require(Privilege::All, command, db, &j.table),
            None => access.require_database(Privilege::All, db),
        }
    }
}
