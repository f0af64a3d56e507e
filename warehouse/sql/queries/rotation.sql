-- Changing pseudonymisation keys on purpose (warehouse/rotation.py, cbm rotate-key).

-- name: codes
-- Every party code a pseudonym was made from.
SELECT party_code FROM landed_submissions WHERE party_code IS NOT NULL
UNION SELECT code FROM party_directory
UNION SELECT subject_party__code FROM anon_attestations WHERE subject_party__code IS NOT NULL

-- name: repseudonymise
-- One column of pseudonyms, old to new (pseudonym_map); how many rows changed.
UPDATE {table} SET "{column}" = m.new FROM pseudonym_map m WHERE {table}."{column}" = m.old

-- name: rehash_technical_keys
-- One column of ';'-separated keyed hashes, each old hash to its new one (tkey_map).
UPDATE {table} SET {column} = (
  SELECT string_agg(coalesce(m.new, k), ';' ORDER BY coalesce(m.new, k))
  FROM unnest(string_split({column}, ';')) u(k) LEFT JOIN tkey_map m ON m.old = k)
WHERE {column} IS NOT NULL

-- name: landed_under
UPDATE landed_submissions SET key_version = ?

-- name: record
-- The rotation, listed for the next release to name (release_id NULL until then).
INSERT INTO key_rotations VALUES (?, ?, ?, ?, NULL)

-- name: with_technical_keys
SELECT DISTINCT submission_sha FROM anon_incidents WHERE technical_keys IS NOT NULL ORDER BY 1
