"""The only place that speaks SQL: the ClickHouse client, migrations and one repository per table or kind."""
