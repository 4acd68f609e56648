use super::*;
use signaling::mailbox::NewMessage;

/// Bindings only, as one commit.
fn write(db: &Database, bindings: Vec<(String, Option<Vec<u8>>)>) -> Result<(), redb::Error> {
    super::write(
        db,
        Commit {
            bindings,
            mail: Vec::new(),
        },
    )
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trunkline-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn binding(contact: &str, expires_ms: u64) -> StoredBinding {
    StoredBinding {
        contact: contact.into(),
        target: "alice@192.168.1.20:5060".into(),
        source: Peer {
            transport: Transport::Udp,
            addr: "203.0.113.9:40000".parse().unwrap(),
        },
        expires_ms,
        q: 1000,
        call_id: "reg-1".into(),
        cseq: 7,
        updated_ms: 5,
    }
}

#[test]
fn records_round_trip_and_no_prefix_of_one_decodes() {
    let mut v6 = binding("<sip:a@[2001:db8::1]>", 99);
    v6.source = Peer {
        transport: Transport::Tls,
        addr: "[2001:db8::1]:5061".parse().unwrap(),
    };
    let list = vec![binding("sip:alice@192.168.1.20:5060", 123), v6];
    let bytes = encode(&list);
    assert_eq!(decode(&bytes), Some(list));
    for n in 0..bytes.len() {
        assert_eq!(decode(&bytes[..n]), None, "prefix of {n} bytes");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(decode(&longer), None);
}

#[test]
fn times_cross_processes_as_wall_clock() {
    let now = Instant::now();
    let wall = 1_700_000_000_000;
    let b = binding("sip:a@b", wall + 60_000).binding(now, wall);
    assert_eq!(b.expires.duration_since(now), Duration::from_secs(60));
    let back = StoredBinding::of(&b, now, wall);
    assert_eq!(back.expires_ms, wall + 60_000);
    assert_eq!(back.updated_ms, 5, "past instants too (saturating)");
}

#[test]
fn a_store_keeps_live_bindings_and_drops_expired_ones_on_load() {
    let d = dir("load");
    let path = d.join("location.db");
    let wall = unix_ms(SystemTime::now());
    {
        let (db, loaded) = open(&path).unwrap();
        assert!(loaded.aors.is_empty());
        write(
            &db,
            vec![
                (
                    "alice@x".into(),
                    Some(encode(&[binding("sip:a@1", wall + 600_000)])),
                ),
                (
                    "bob@x".into(),
                    Some(encode(&[binding("sip:b@1", wall - 1)])),
                ),
                (
                    "carol@x".into(),
                    Some(encode(&[
                        binding("sip:c@1", wall - 1),
                        binding("sip:c@2", wall + 600_000),
                    ])),
                ),
                ("junk@x".into(), Some(vec![9, 9, 9])),
            ],
        )
        .unwrap();
    }
    let (_db, loaded) = open(&path).unwrap();
    let mut aors: Vec<(String, usize)> = loaded
        .aors
        .iter()
        .map(|(a, l)| (a.clone(), l.len()))
        .collect();
    aors.sort();
    assert_eq!(aors, vec![("alice@x".into(), 1), ("carol@x".into(), 1)]);
    assert_eq!((loaded.expired, loaded.unreadable), (2, 1));
    drop(_db);
    // the expired and unreadable records were removed from the file too
    let (_db, again) = open(&path).unwrap();
    assert_eq!(
        (again.aors.len(), again.expired, again.unreadable),
        (2, 0, 0)
    );
    let _ = std::fs::remove_dir_all(&d);
}

fn stored(id: u64, text: &str, expires_ms: u64) -> StoredMessage {
    StoredMessage {
        id,
        msg: NewMessage {
            from_user: "alice".into(),
            content_type: Some("text/plain".into()),
            body: text.as_bytes().to_vec(),
            received_unix: Some(1_700_000_000),
        },
        expires_ms,
        failures: 0,
    }
}

#[test]
fn held_messages_come_back_per_user_in_order_and_expired_ones_go() {
    let d = dir("mail");
    let path = d.join("location.db");
    let wall = unix_ms(SystemTime::now());
    let later = wall + 600_000;
    {
        let (db, loaded) = open(&path).unwrap();
        assert!(loaded.messages.is_empty());
        let put = |aor: &str, m: StoredMessage| MailWrite::Put(aor.into(), m.id, mail::encode(&m));
        let mail = vec![
            put("bob@x", stored(12, "second", later)),
            put("bob@x", stored(3, "first", later)),
            put("bob@x", stored(20, "stale", wall - 1)),
            put("carol@x", stored(4, "hi", later)),
            put("carol@x", stored(5, "gone", later)),
            MailWrite::Delete("carol@x".into(), 5),
            MailWrite::Put("dave@x".into(), 6, b"garbage".to_vec()),
        ];
        super::write(
            &db,
            Commit {
                bindings: Vec::new(),
                mail,
            },
        )
        .unwrap();
    }
    let (_db, loaded) = open(&path).unwrap();
    let texts: Vec<(String, Vec<String>)> = loaded
        .messages
        .iter()
        .map(|(aor, list)| {
            let t = list
                .iter()
                .map(|m| String::from_utf8(m.msg.body.clone()).unwrap())
                .collect();
            (aor.clone(), t)
        })
        .collect();
    assert_eq!(
        texts,
        vec![
            (
                "bob@x".to_string(),
                vec!["first".to_string(), "second".to_string()]
            ),
            ("carol@x".to_string(), vec!["hi".to_string()]),
        ]
    );
    assert_eq!(loaded.expired_messages, 1);
    assert_eq!(loaded.unreadable, 1);
    drop(_db);
    // The expired and unreadable records were removed on that load.
    let (_db, again) = open(&path).unwrap();
    assert_eq!(again.expired_messages + again.unreadable, 0);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_corrupt_or_truncated_file_is_moved_aside_and_the_store_starts_empty() {
    let d = dir("corrupt");
    let path = d.join("location.db");
    std::fs::write(
        &path,
        b"this is not a redb file at all, just some bytes\n".repeat(100),
    )
    .unwrap();
    let (db, loaded) = open(&path).unwrap();
    assert!(loaded.aors.is_empty());
    drop(db);
    let aside: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("location.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    // A real store cut short: either redb repairs it or it is moved aside; never an error.
    let wall = unix_ms(SystemTime::now());
    {
        let (db, _) = open(&path).unwrap();
        let many: Vec<(String, Option<Vec<u8>>)> = (0..2000)
            .map(|i| {
                (
                    format!("u{i}@x"),
                    Some(encode(&[binding("sip:a@1", wall + 600_000)])),
                )
            })
            .collect();
        write(&db, many).unwrap();
    }
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let (_db, loaded) = open(&path).expect("starts whatever the file holds");
    assert!(loaded.aors.len() <= 2000);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn check_wants_the_directory_of_the_store() {
    let yaml = |store: &str| {
        format!(
            "{}registrar:\n  domains: [x.example]\n  store: {store}\n  users: {{ a: {{ password: p }} }}\n",
            include_str!("../../examples/b2bua.yaml")
        )
    };
    let cfg = config::from_yaml(&yaml("/nonexistent-dir/location.db"), "t.yaml").unwrap();
    let e = check(&cfg, None).unwrap_err();
    assert!(e.contains("/nonexistent-dir"), "{e}");
    let d = dir("check");
    let cfg = config::from_yaml(&yaml(&d.join("l.db").display().to_string()), "t.yaml").unwrap();
    assert_eq!(check(&cfg, None), Ok(()));
    let _ = std::fs::remove_dir_all(&d);
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// 100,000 bindings (one per AoR) written, then a "restart": the file read, decoded and every
/// binding given back to a core. Prints the times, the file size and the core's memory for
/// them (BENCHMARKS.md); asserts a generous bound so a loaded CI machine does not flake.
#[test]
fn a_restart_with_100k_bindings_is_quick() {
    const N: usize = 100_000;
    let d = dir("100k");
    let path = d.join("location.db");
    let wall = unix_ms(SystemTime::now());
    {
        let (db, _) = open(&path).unwrap();
        let t = Instant::now();
        for chunk in (0..N).collect::<Vec<_>>().chunks(10_000) {
            let records = chunk
                .iter()
                .map(|i| {
                    let mut b = binding(
                        &format!("sip:u{i}@10.{}.{}.1:5060", i / 256 % 256, i % 256),
                        wall + 3_600_000,
                    );
                    b.call_id = format!("{i:032x}@phone");
                    (format!("u{i}@pbx.example.com"), Some(encode(&[b])))
                })
                .collect();
            write(&db, records).unwrap();
        }
        eprintln!("wrote {N} bindings in {:?}", t.elapsed());
    }
    let size = std::fs::metadata(&path).unwrap().len();
    let rss0 = rss_bytes();
    let t = Instant::now();
    let (_db, loaded) = open(&path).unwrap();
    let read = t.elapsed();
    let now = Instant::now();
    let wall = unix_ms(SystemTime::now());
    let mut core = B2bua::new(signaling::b2bua::CoreConfig::default());
    for (aor, list) in loaded.aors {
        let list = list.iter().map(|b| b.binding(now, wall)).collect();
        core.restore_location(aor, list, now);
    }
    let ready = t.elapsed();
    let rss1 = rss_bytes();
    assert_eq!(core.registered_contacts(now), N);
    eprintln!(
        "restart: read+decode {read:?}, ready (in the core) {ready:?}; file {} MB; RSS +{} MB",
        size / 1_000_000,
        rss1.saturating_sub(rss0) / 1_000_000
    );
    assert!(ready < Duration::from_secs(10), "{ready:?}");
    let _ = std::fs::remove_dir_all(&d);
}
