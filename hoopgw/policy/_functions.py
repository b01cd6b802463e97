"""Built-in lists of functions with side effects (``[sql] admin_functions`` / ``write_functions``)."""

from __future__ import annotations

#: Calling one of these anywhere in a statement adds the ``admin`` class: they read or write server
#: files, run SQL given as text, open connections to other servers, signal backends or change the
#: server's WAL, replication or statistics state.
DEFAULT_ADMIN_FUNCTIONS = frozenset(
    {
        # server files (and the functions behind the configuration-file views)
        "pg_read_file",
        "pg_read_file_old",
        "pg_current_logfile",
        "pg_show_all_file_settings",
        "pg_hba_file_rules",
        "pg_ident_file_mappings",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "pg_ls_logdir",
        "pg_ls_waldir",
        "pg_ls_tmpdir",
        "pg_ls_archive_statusdir",
        "pg_ls_logicalsnapdir",
        "pg_ls_logicalmapdir",
        "pg_ls_replslotdir",
        "lo_import",
        "lo_export",
        # adminpack
        "pg_file_write",
        "pg_file_rename",
        "pg_file_unlink",
        "pg_file_sync",
        "pg_logdir_ls",
        "pg_file_read",
        "pg_file_length",
        "pg_logfile_rotate",
        # other backends and the server process
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_rotate_logfile_old",
        "pg_log_backend_memory_contexts",
        "pg_promote",
        # WAL, backups, replication
        "pg_switch_wal",
        "pg_switch_xlog",
        "pg_create_restore_point",
        "pg_backup_start",
        "pg_backup_stop",
        "pg_start_backup",
        "pg_stop_backup",
        "pg_wal_replay_pause",
        "pg_wal_replay_resume",
        "pg_logical_emit_message",
        "pg_create_physical_replication_slot",
        "pg_create_logical_replication_slot",
        "pg_copy_physical_replication_slot",
        "pg_copy_logical_replication_slot",
        "pg_drop_replication_slot",
        "pg_replication_slot_advance",
        "pg_sync_replication_slots",
        "pg_logical_slot_get_changes",
        "pg_logical_slot_peek_changes",
        "pg_logical_slot_get_binary_changes",
        "pg_logical_slot_peek_binary_changes",
        "pg_replication_origin_create",
        "pg_replication_origin_drop",
        "pg_replication_origin_advance",
        "pg_replication_origin_session_setup",
        "pg_replication_origin_session_reset",
        "pg_replication_origin_xact_setup",
        "pg_replication_origin_xact_reset",
        # planner statistics written by hand (PostgreSQL 18), standby snapshots (16)
        "pg_set_relation_stats",
        "pg_restore_relation_stats",
        "pg_clear_relation_stats",
        "pg_set_attribute_stats",
        "pg_restore_attribute_stats",
        "pg_clear_attribute_stats",
        "pg_log_standby_snapshot",
        # extensions: background workers running SQL text, the shared buffer cache
        "pg_background_launch",
        "pg_buffercache_evict",
        "pg_buffercache_evict_relation",
        "pg_buffercache_evict_all",
        "pg_prewarm",
        # statistics resets
        "pg_stat_reset",
        "pg_stat_reset_backend_stats",
        "pg_stat_reset_shared",
        "pg_stat_reset_single_table_counters",
        "pg_stat_reset_single_function_counters",
        "pg_stat_reset_slru",
        "pg_stat_reset_replication_slot",
        "pg_stat_reset_subscription_stats",
        "pg_stat_statements_reset",
        # SQL given as text (the classifier cannot see what it runs): ts_stat and ts_rewrite run
        # their text argument as a query, so set_config() could hide in there
        "ts_stat",
        "ts_rewrite",
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        # index maintenance (VACUUM-like work, which is admin)
        "brin_summarize_range",
        "brin_summarize_new_values",
        "brin_desummarize_range",
        "gin_clean_pending_list",
        "pg_import_system_collations",
        # connections to other servers
        "dblink",
        "dblink_exec",
        "dblink_connect",
        "dblink_connect_u",
        "dblink_open",
        "dblink_send_query",
    }
)

#: Calling one of these anywhere in a statement adds the ``write`` class: they change sequences or
#: large objects, or wake other sessions (pg_notify, like NOTIFY).
DEFAULT_WRITE_FUNCTIONS = frozenset(
    {
        "nextval",
        "setval",
        "lo_create",
        "lo_creat",
        "lo_unlink",
        "lo_put",
        "lo_from_bytea",
        "lowrite",
        "lo_truncate",
        "lo_truncate64",
        "pg_notify",
    }
)
