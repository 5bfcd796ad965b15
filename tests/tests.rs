//! popbridge's integration tests: one binary, modules per area. They run the real `popbridge`
//! binary against real peers (a private Dovecot per test) and scripted fakes (`util::fake_pop3`),
//! and check what a user would notice: exit codes, messages, bytes in the store, mail left on the server.

mod util;

mod bounded_import;
mod cli;
mod crash;
mod daemon;
mod deliver;
mod duplicates;
mod fuzz;
mod identity;
mod imap;
mod imap_binary;
mod imap_clients_ext;
mod imap_concurrent;
mod imap_condstore;
mod imap_list;
mod imap_search;
mod imap_sort;
mod import_mail;
mod import_state;
mod layers;
mod limits;
mod memory;
mod oauth;
mod pipe_window;
mod pop_dovecot;
mod pop_faults;
mod resources;
mod security;
mod setup;
mod smtp;
mod store_damage;
mod stress;
mod uidvalidity;
mod upstream;
mod wizard;
