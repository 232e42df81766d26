//! Any text as a schema file: parsing and validation end in a schema or `invalid_schema`;
//! a valid schema renders its prompt, and a JSON round trip gives the same schema.
#![no_main]

use anote_ner::ner::schema::Schema;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    match Schema::from_json(json) {
        Ok(schema) => {
            let _ = anote_ner::ner::prompt::prefix(&schema);
            let again = Schema::from_json(&serde_json::to_string(&schema).unwrap()).unwrap();
            assert_eq!(again, schema);
        }
        Err(e) => assert_eq!(e.code(), "invalid_schema"),
    }
});
