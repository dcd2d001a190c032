//! Saving and loading a buffer as a directory: `header.json` with the shapes, cursor and
//! generator state, plus one `.npy` file per array, readable with `numpy.load`.
//!
//! Arrays are streamed in chunks of at most [`CHUNK_BYTES`], so saving or loading never makes a
//! second copy of the observations. The directory is written under a temporary name, every
//! file is fsynced, and the directory is renamed into place, so a crash leaves either the old
//! directory or the new one.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::rng::Generator;
use super::{Cursor, ReplayBuffer, ReplaySpec, Storage};
use crate::error::{Error, Result};

const FORMAT: &str = "recrl.replay";
const FORMAT_VERSION: u32 = 1;
const CHUNK_BYTES: usize = 8 << 20;

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    capacity: usize,
    observation_dim: usize,
    action_dim: usize,
    reward_dim: usize,
    extras: Vec<(String, usize)>,
    alpha: f64,
    size: usize,
    position: usize,
    written: u64,
    episode: u64,
    step: u32,
    open: bool,
    stale_updates: u64,
    // Hexadecimal, because JSON readers that parse numbers as doubles lose bits above 2^53.
    generator_state: [String; 4],
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn format_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        line: 1,
        column: None,
        message: message.into(),
    }
}

/// A plain-old-data element with a NumPy dtype string.
trait NpyElement: Copy + Default {
    const DESCR: &'static str;
    const SIZE: usize;
    fn write_le(value: Self, bytes: &mut Vec<u8>);
    fn read_le(bytes: &[u8]) -> Self;
}

macro_rules! npy_number {
    ($type:ty, $descr:expr) => {
        impl NpyElement for $type {
            const DESCR: &'static str = $descr;
            const SIZE: usize = std::mem::size_of::<$type>();
            fn write_le(value: Self, bytes: &mut Vec<u8>) {
                bytes.extend_from_slice(&value.to_le_bytes());
            }
            fn read_le(bytes: &[u8]) -> Self {
                <$type>::from_le_bytes(bytes.try_into().expect("chunk of element size"))
            }
        }
    };
}

npy_number!(f32, "<f4");
npy_number!(f64, "<f8");
npy_number!(i64, "<i8");
npy_number!(u64, "<u8");
npy_number!(u32, "<u4");

impl NpyElement for bool {
    const DESCR: &'static str = "|b1";
    const SIZE: usize = 1;
    fn write_le(value: Self, bytes: &mut Vec<u8>) {
        bytes.push(value as u8);
    }
    fn read_le(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
}

fn npy_header<T: NpyElement>(rows: usize, width: Option<usize>) -> Vec<u8> {
    let shape = match width {
        Some(width) => format!("({rows}, {width})"),
        None => format!("({rows},)"),
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        T::DESCR
    );
    // Magic (6) + version (2) + length (2) + dict + newline must be a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    header.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    header
}

fn write_npy<T: NpyElement>(
    path: &Path,
    values: &[T],
    rows: usize,
    width: Option<usize>,
) -> Result<()> {
    let file = File::create(path).map_err(|e| io_error(path, e))?;
    let mut writer = BufWriter::new(file);
    writer
        .write_all(&npy_header::<T>(rows, width))
        .map_err(|e| io_error(path, e))?;
    let mut bytes = Vec::with_capacity(CHUNK_BYTES);
    for chunk in values[..rows * width.unwrap_or(1)].chunks(CHUNK_BYTES / T::SIZE) {
        bytes.clear();
        for &value in chunk {
            T::write_le(value, &mut bytes);
        }
        writer.write_all(&bytes).map_err(|e| io_error(path, e))?;
    }
    let file = writer
        .into_inner()
        .map_err(|e| io_error(path, e.into_error()))?;
    file.sync_all().map_err(|e| io_error(path, e))
}

fn read_npy<T: NpyElement>(
    path: &Path,
    target: &mut [T],
    rows: usize,
    width: Option<usize>,
) -> Result<()> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut reader = BufReader::new(file);
    let expected = npy_header::<T>(rows, width);
    let mut header = vec![0u8; expected.len()];
    reader
        .read_exact(&mut header)
        .map_err(|e| io_error(path, e))?;
    if header != expected {
        return Err(format_error(
            path,
            format!(
                "expected the header {:?}, got {:?}",
                String::from_utf8_lossy(&expected[10..]).trim_end(),
                String::from_utf8_lossy(&header[10..]).trim_end()
            ),
        ));
    }
    let mut bytes = vec![0u8; CHUNK_BYTES];
    for chunk in target[..rows * width.unwrap_or(1)].chunks_mut(CHUNK_BYTES / T::SIZE) {
        let bytes = &mut bytes[..chunk.len() * T::SIZE];
        reader.read_exact(bytes).map_err(|e| io_error(path, e))?;
        for (value, raw) in chunk.iter_mut().zip(bytes.chunks_exact(T::SIZE)) {
            *value = T::read_le(raw);
        }
    }
    Ok(())
}

fn sync_directory(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|directory| directory.sync_all())
        .map_err(|e| io_error(path, e))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "replay".to_owned());
    path.with_file_name(format!(".{name}.{suffix}-{}", std::process::id()))
}

impl Storage {
    fn write_arrays(&self, directory: &Path) -> Result<()> {
        let spec = &self.spec;
        let rows = self.cursor.size;
        let file = |name: &str| directory.join(format!("{name}.npy"));
        write_npy(
            &file("observations"),
            &self.observations,
            rows,
            Some(spec.observation_dim),
        )?;
        write_npy(&file("actions"), &self.actions, rows, Some(spec.action_dim))?;
        write_npy(&file("rewards"), &self.rewards, rows, Some(spec.reward_dim))?;
        write_npy(&file("terminals"), &self.terminals, rows, None)?;
        write_npy(&file("truncations"), &self.truncations, rows, None)?;
        write_npy(&file("sampleable"), &self.sampleable, rows, None)?;
        write_npy(&file("episode_ids"), &self.episode_ids, rows, None)?;
        write_npy(&file("episode_steps"), &self.episode_steps, rows, None)?;
        write_npy(&file("stamps"), &self.stamps, rows, None)?;
        write_npy(&file("priorities"), &self.priorities, rows, None)?;
        for ((name, width), column) in spec.extras.iter().zip(&self.extras) {
            write_npy(&file(&format!("extra.{name}")), column, rows, Some(*width))?;
        }
        Ok(())
    }

    fn read_arrays(&mut self, directory: &Path, rows: usize) -> Result<()> {
        let spec = self.spec.clone();
        let file = |name: &str| directory.join(format!("{name}.npy"));
        read_npy(
            &file("observations"),
            &mut self.observations,
            rows,
            Some(spec.observation_dim),
        )?;
        read_npy(
            &file("actions"),
            &mut self.actions,
            rows,
            Some(spec.action_dim),
        )?;
        read_npy(
            &file("rewards"),
            &mut self.rewards,
            rows,
            Some(spec.reward_dim),
        )?;
        read_npy(&file("terminals"), &mut self.terminals, rows, None)?;
        read_npy(&file("truncations"), &mut self.truncations, rows, None)?;
        read_npy(&file("sampleable"), &mut self.sampleable, rows, None)?;
        read_npy(&file("episode_ids"), &mut self.episode_ids, rows, None)?;
        read_npy(&file("episode_steps"), &mut self.episode_steps, rows, None)?;
        read_npy(&file("stamps"), &mut self.stamps, rows, None)?;
        read_npy(&file("priorities"), &mut self.priorities, rows, None)?;
        for ((name, width), column) in spec.extras.iter().zip(self.extras.iter_mut()) {
            read_npy(&file(&format!("extra.{name}")), column, rows, Some(*width))?;
        }
        Ok(())
    }

    // Recount sampleable slots and rebuild both trees from the loaded priorities.
    fn rebuild_index(&mut self, header_path: &Path) -> Result<()> {
        let sampleable: Vec<usize> = (0..self.cursor.size)
            .filter(|&slot| self.sampleable[slot])
            .collect();
        for &slot in &sampleable {
            let priority = self.priorities[slot];
            if !(priority.is_finite() && priority > 0.0) {
                return Err(format_error(
                    header_path,
                    format!("slot {slot} is sampleable but has priority {priority}"),
                ));
            }
            self.sampleable[slot] = false;
            self.activate(slot);
        }
        Ok(())
    }
}

impl ReplayBuffer {
    /// Write the buffer into the directory `path`, replacing it if it exists.
    ///
    /// Extends and priority updates from other threads wait until the save completes, so the
    /// files describe one consistent state. Sample marks (used by priority updates without
    /// stamps) are not saved.
    pub fn save(&self, path: &Path) -> Result<()> {
        let storage = self.read()?;
        let state = self.generator_state()?;
        let spec = &storage.spec;
        let cursor = &storage.cursor;
        let header = Header {
            format: FORMAT.to_owned(),
            version: FORMAT_VERSION,
            capacity: spec.capacity,
            observation_dim: spec.observation_dim,
            action_dim: spec.action_dim,
            reward_dim: spec.reward_dim,
            extras: spec.extras.clone(),
            alpha: spec.alpha,
            size: cursor.size,
            position: cursor.position,
            written: cursor.written,
            episode: cursor.episode,
            step: cursor.step,
            open: cursor.open,
            stale_updates: storage.stale_updates,
            generator_state: state.map(|word| format!("{word:016x}")),
        };

        let temporary = sibling(path, "tmp");
        if temporary.exists() {
            fs::remove_dir_all(&temporary).map_err(|e| io_error(&temporary, e))?;
        }
        fs::create_dir_all(&temporary).map_err(|e| io_error(&temporary, e))?;
        storage.write_arrays(&temporary)?;
        let header_path = temporary.join("header.json");
        let text = serde_json::to_string_pretty(&header)
            .map_err(|e| format_error(&header_path, format!("cannot encode the header: {e}")))?;
        let mut file = File::create(&header_path).map_err(|e| io_error(&header_path, e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error(&header_path, e))?;
        sync_directory(&temporary)?;

        // Move an existing directory aside first: rename cannot replace a non-empty directory.
        let previous = sibling(path, "old");
        let replaced = path.exists();
        if replaced {
            fs::rename(path, &previous).map_err(|e| io_error(path, e))?;
        }
        fs::rename(&temporary, path).map_err(|e| io_error(path, e))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_directory(parent)?;
        }
        if replaced {
            fs::remove_dir_all(&previous).map_err(|e| io_error(&previous, e))?;
        }
        Ok(())
    }

    /// Read a buffer written by [`ReplayBuffer::save`], with its priorities, cursor and
    /// generator state.
    pub fn load(path: &Path) -> Result<Self> {
        let header_path = path.join("header.json");
        let text = fs::read_to_string(&header_path).map_err(|e| io_error(&header_path, e))?;
        let header: Header = serde_json::from_str(&text)
            .map_err(|e| format_error(&header_path, format!("invalid header: {e}")))?;
        if header.format != FORMAT || header.version != FORMAT_VERSION {
            return Err(format_error(
                &header_path,
                format!(
                    "expected format {FORMAT:?} version {FORMAT_VERSION}, got {:?} version {}",
                    header.format, header.version
                ),
            ));
        }
        if header.size > header.capacity || header.position >= header.capacity {
            return Err(format_error(
                &header_path,
                format!(
                    "size {} and position {} do not fit capacity {}",
                    header.size, header.position, header.capacity
                ),
            ));
        }
        let mut words = [0u64; 4];
        for (word, text) in words.iter_mut().zip(&header.generator_state) {
            *word = u64::from_str_radix(text, 16).map_err(|e| {
                format_error(&header_path, format!("generator_state {text:?}: {e}"))
            })?;
        }
        let generator = Generator::from_state(words).ok_or_else(|| {
            format_error(
                &header_path,
                "generator_state is all zero, which xoshiro cannot use",
            )
        })?;

        let spec = ReplaySpec {
            capacity: header.capacity,
            observation_dim: header.observation_dim,
            action_dim: header.action_dim,
            reward_dim: header.reward_dim,
            extras: header.extras,
            alpha: header.alpha,
        };
        let mut storage = Storage::new(spec)?;
        storage.cursor = Cursor {
            position: header.position,
            size: header.size,
            written: header.written,
            episode: header.episode,
            step: header.step,
            open: header.open,
        };
        storage.stale_updates = header.stale_updates;
        storage.read_arrays(path, header.size)?;
        storage.rebuild_index(&header_path)?;
        Ok(ReplayBuffer {
            storage: std::sync::RwLock::new(storage),
            generator: std::sync::Mutex::new(generator),
        })
    }
}
