--
-- PostgreSQL database dump
--


-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: fedprop_fixture_v2; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA fedprop_fixture_v2;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: fedprop_audit; Type: TABLE; Schema: fedprop_fixture_v2; Owner: -
--

CREATE TABLE fedprop_fixture_v2.fedprop_audit (
    seq bigint NOT NULL,
    doc json NOT NULL,
    checksum text NOT NULL,
    CONSTRAINT fedprop_audit_seq_check CHECK ((seq > 0))
);


--
-- Name: fedprop_head; Type: TABLE; Schema: fedprop_fixture_v2; Owner: -
--

CREATE TABLE fedprop_fixture_v2.fedprop_head (
    id integer NOT NULL,
    latest bigint NOT NULL,
    audit_head text NOT NULL,
    audit_checksum text NOT NULL,
    CONSTRAINT fedprop_head_id_check CHECK ((id = 1))
);


--
-- Name: fedprop_leader; Type: TABLE; Schema: fedprop_fixture_v2; Owner: -
--

CREATE TABLE fedprop_fixture_v2.fedprop_leader (
    id integer NOT NULL,
    term bigint NOT NULL,
    holder text NOT NULL,
    since timestamp with time zone NOT NULL,
    CONSTRAINT fedprop_leader_id_check CHECK ((id = 1))
);


--
-- Name: fedprop_meta; Type: TABLE; Schema: fedprop_fixture_v2; Owner: -
--

CREATE TABLE fedprop_fixture_v2.fedprop_meta (
    id integer NOT NULL,
    format text NOT NULL,
    CONSTRAINT fedprop_meta_id_check CHECK ((id = 1))
);


--
-- Name: fedprop_runs; Type: TABLE; Schema: fedprop_fixture_v2; Owner: -
--

CREATE TABLE fedprop_fixture_v2.fedprop_runs (
    id text NOT NULL,
    seq bigint NOT NULL,
    doc json NOT NULL,
    checksum text NOT NULL
);


--
-- Name: fedprop_runs_seq_seq; Type: SEQUENCE; Schema: fedprop_fixture_v2; Owner: -
--

ALTER TABLE fedprop_fixture_v2.fedprop_runs ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME fedprop_fixture_v2.fedprop_runs_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: fedprop_versions; Type: TABLE; Schema: fedprop_fixture_v2; Owner: -
--

CREATE TABLE fedprop_fixture_v2.fedprop_versions (
    version bigint NOT NULL,
    run_id text NOT NULL,
    round integer NOT NULL,
    created timestamp with time zone NOT NULL,
    doc json NOT NULL,
    checksum text NOT NULL,
    CONSTRAINT fedprop_versions_version_check CHECK ((version > 0))
);


--
-- Data for Name: fedprop_audit; Type: TABLE DATA; Schema: fedprop_fixture_v2; Owner: -
--

COPY fedprop_fixture_v2.fedprop_audit (seq, doc, checksum) FROM stdin;
1	{"seq":1,"time":"2026-03-04T05:06:08.123456789Z","actor":"coordinator-1","role":"coordinator","action":"run.start","subject":"q3-pd","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"d8831ec9a1acc4b54fd88cff96d9bb5293bc072e6e1572bca35e87d122697c5c"}	c5978be1d02ee31bfd83f35a94fbcd8bfcdeb24415e68b7e02010e4b14980e2c
2	{"seq":2,"time":"2026-03-04T05:06:09.123456789Z","actor":"coordinator-1","role":"coordinator","action":"model.commit","subject":"version 1","reason":"run q3-pd round 1, candidate","prev_hash":"d8831ec9a1acc4b54fd88cff96d9bb5293bc072e6e1572bca35e87d122697c5c","hash":"0d577029f01be88388bdae059b82f3ade1fd2d030d41a8867820902b69c354fd"}	094c6df4304e2911fde15d7a3772056d92aabc53b33c27bbaa122a311c0d5ef6
3	{"seq":3,"time":"2026-03-04T05:06:10.123456789Z","actor":"coordinator-1","role":"coordinator","action":"model.commit","subject":"version 2","reason":"run q3-pd round 2, candidate","prev_hash":"0d577029f01be88388bdae059b82f3ade1fd2d030d41a8867820902b69c354fd","hash":"bef080f0e51fa8a14fa9a054df585bb9a178f7c787c75c44b3847d8645ddc416"}	4058c084da1c0d3bfcb0d7b014c475de9a19c1b45d0d2fc0aeade0db2f9f05fb
4	{"seq":4,"time":"2026-03-04T05:06:11.123456789Z","actor":"coordinator-1","role":"coordinator","action":"model.commit","subject":"version 3","reason":"run q3-pd round 3, candidate","prev_hash":"bef080f0e51fa8a14fa9a054df585bb9a178f7c787c75c44b3847d8645ddc416","hash":"c57d02db5531df0b869adb5308ebdb677df9b341c54fa263ee624467cb14701c"}	2ddf368a61f0dc215088e844967da6ea78c5979e26b59e91583c717a2a13b798
5	{"seq":5,"time":"2026-03-04T05:06:12.123456789Z","actor":"coordinator-1","role":"coordinator","action":"run.stop","subject":"q3-pd","reason":"completed: all 3 rounds committed","prev_hash":"c57d02db5531df0b869adb5308ebdb677df9b341c54fa263ee624467cb14701c","hash":"e6e4cb2a0d469e8823ee0f63b4cc709cc8bb8db7684cbc1b94cfecdef08574ce"}	fd026ad20cb67635e65d8af8f0bf56c6a5e759c75ac021e635258b18938be2ce
6	{"seq":6,"time":"2026-03-04T06:06:12.123456789Z","actor":"risk-officer","role":"approver","action":"model.approve","subject":"version 2","reason":"validated on the Q3 holdout","digest":"1ddd8a85424bc663b0bace201578348b197b782f1d2d0bee03b956b887d66cc5","signature":{"certificate":"MIIB6DCCAY2gAwIBAgIQPTehSinem8fFj0Jr8lwymTAKBggqhkjOPQQDAjAnMRAwDgYDVQQKEwdmZWRwcm9wMRMwEQYDVQQDEwpmaXh0dXJlIENBMCAXDTI1MTIzMTIzNTUwMFoYDzIxMjUxMjA4MDAwMDAwWjA8MRAwDgYDVQQKEwdmZWRwcm9wMREwDwYDVQQLEwhhcHByb3ZlcjEVMBMGA1UEAxMMcmlzay1vZmZpY2VyMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEkoKDxOD2SlzkLLIScnIzCa9l1NdUE7KwuVsJ06eKPVof++3CJ82HHI4ngiRLnFkyDJ2FlgEoOn6lUdoCkAfOaqOBgzCBgDAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwIwDAYDVR0TAQH/BAIwADAfBgNVHSMEGDAWgBRyck5GtfB8vM9QutxlnUvruul70jAqBgNVHREEIzAhhh9mZWRwcm9wOi8vYXBwcm92ZXIvcmlzay1vZmZpY2VyMAoGCCqGSM49BAMCA0kAMEYCIQDCMBDogAzcsok70UVTmDokkRGDwuO+Qsd2ocQkGQsfCgIhAPW53oiDlcv/i00w+4Uj6/PNaKmVAbwDiDV1LlAMafmO","signature":"MEYCIQCsfnQ92But/HMaQVYWpCSqkQb9DyVJaFMXDBuaVmNHvgIhANtlkKKxxNyYDryn0EOdwalbQLFdbgeu6G+Hq88dGT8q"},"prev_hash":"e6e4cb2a0d469e8823ee0f63b4cc709cc8bb8db7684cbc1b94cfecdef08574ce","hash":"17909cada0bc2a9b93b9bc17a975a8ce217c7f726e44b3a6ad48ab1c18fd7935"}	6f5ecfe4900c7d5bae613fc9efe28a1a5e5d41f99c1d7a50bed0972c24b4aa06
7	{"seq":7,"time":"2026-03-04T05:06:13.123456789Z","actor":"coordinator-1","role":"coordinator","action":"run.start","subject":"q4-pd","prev_hash":"17909cada0bc2a9b93b9bc17a975a8ce217c7f726e44b3a6ad48ab1c18fd7935","hash":"b796cdcdfada0b4ed6b896d8f14831c8a10985923cea69e65c6da900901288dc"}	c71d5c826e900ef573c685230663e831ad28153611793a4a1386c67ae4096041
8	{"seq":8,"time":"2026-03-04T05:06:14.123456789Z","actor":"coordinator-1","role":"coordinator","action":"model.commit","subject":"version 4","reason":"run q4-pd round 1, candidate","prev_hash":"b796cdcdfada0b4ed6b896d8f14831c8a10985923cea69e65c6da900901288dc","hash":"6984a073e327d6f44f9dc04dc5595c358bf71f7970f777d6b1d224b6a15cc0d3"}	502b7c1887ea44756821d38796d750d906298e3c52d416eef5a06966a2a8f591
\.


--
-- Data for Name: fedprop_head; Type: TABLE DATA; Schema: fedprop_fixture_v2; Owner: -
--

COPY fedprop_fixture_v2.fedprop_head (id, latest, audit_head, audit_checksum) FROM stdin;
1	4	8:6984a073e327d6f44f9dc04dc5595c358bf71f7970f777d6b1d224b6a15cc0d3	744e5e4f972948e493bc65111900e2eea7a3e051d67b26b822b13fcd5754146c
\.


--
-- Data for Name: fedprop_leader; Type: TABLE DATA; Schema: fedprop_fixture_v2; Owner: -
--

COPY fedprop_fixture_v2.fedprop_leader (id, term, holder, since) FROM stdin;
\.


--
-- Data for Name: fedprop_meta; Type: TABLE DATA; Schema: fedprop_fixture_v2; Owner: -
--

COPY fedprop_fixture_v2.fedprop_meta (id, format) FROM stdin;
1	fedprop.store/v2
\.


--
-- Data for Name: fedprop_runs; Type: TABLE DATA; Schema: fedprop_fixture_v2; Owner: -
--

COPY fedprop_fixture_v2.fedprop_runs (id, seq, doc, checksum) FROM stdin;
q3-pd	1	{"id":"q3-pd","config":{"id":"q3-pd","schema":"schema.yaml","rounds":3,"min_clients":3,"cohort_fraction":1,"min_cohort":3,"quorum":3,"max_attempts":3,"eval_every":1,"histogram_bins":64,"train":{"epochs":0,"batch_size":0,"learning_rate":0,"l2":0,"prox_mu":0},"strategy":{"name":"","server_learning_rate":0,"beta1":0,"beta2":0,"tau":0,"prox_mu":0},"seed":42,"secure_aggregation":{"mode":""},"privacy":{"mechanism":"","epsilon":0,"delta":0,"noise_multiplier":0,"clip_norm":0,"sampling_rate":0,"conversion":""},"robust":{"name":""},"fairness":{"thresholds":null,"bins":0,"groups":null},"min_records_plaintext":null,"round_deadline":"30s"},"schema_hash":"abababababababababababababababababababababababababababababababab","schema_yaml":"bmFtZTogcGQKbGFiZWw6IGRlZmF1bHQKZmVhdHVyZXM6CiAgLSB7bmFtZTogYWdlLCB0eXBlOiBudW1lcmljfQo=","status":"completed","message":"all 3 rounds committed","standardization":{"Mean":[41.5,52000.25],"Std":[12.1,18000.5]},"consent_tracked":true,"excluded_no_consent":12,"stats_clients":3,"stats_records":30000,"last_round":3,"latest_version":3}	12faeee74b5f71c7ab8032a0baa74086d9e3520881451333f3da8e20add49670
q4-pd	6	{"id":"q4-pd","config":{"id":"q4-pd","schema":"schema.yaml","rounds":3,"min_clients":3,"cohort_fraction":1,"min_cohort":3,"quorum":3,"max_attempts":3,"eval_every":1,"histogram_bins":64,"train":{"epochs":0,"batch_size":0,"learning_rate":0,"l2":0,"prox_mu":0},"strategy":{"name":"","server_learning_rate":0,"beta1":0,"beta2":0,"tau":0,"prox_mu":0},"seed":42,"secure_aggregation":{"mode":""},"privacy":{"mechanism":"","epsilon":0,"delta":0,"noise_multiplier":0,"clip_norm":0,"sampling_rate":0,"conversion":""},"robust":{"name":""},"fairness":{"thresholds":null,"bins":0,"groups":null},"min_records_plaintext":null,"round_deadline":"30s"},"schema_hash":"abababababababababababababababababababababababababababababababab","schema_yaml":"bmFtZTogcGQKbGFiZWw6IGRlZmF1bHQKZmVhdHVyZXM6CiAgLSB7bmFtZTogYWdlLCB0eXBlOiBudW1lcmljfQo=","status":"training","message":"fixture éè \\u003c\\u0026\\u003e","standardization":{"Mean":[41.5,52000.25],"Std":[12.1,18000.5]},"consent_tracked":true,"excluded_no_consent":12,"stats_clients":3,"stats_records":30000,"last_round":1,"latest_version":4}	f87319d41a4ceae626102ceb1e25b6455f580e5350443aaa2f55f9ffb8bbd146
\.


--
-- Data for Name: fedprop_versions; Type: TABLE DATA; Schema: fedprop_fixture_v2; Owner: -
--

COPY fedprop_fixture_v2.fedprop_versions (version, run_id, round, created, doc, checksum) FROM stdin;
1	q3-pd	1	2026-03-04 05:07:07.123456+00	{"version":1,"run_id":"q3-pd","round":1,"created":"2026-03-04T05:07:07.123456789Z","weights":[-2.6922345,0.03333333333333333,1e-300,0,12345.678901234567],"features":["age","income"],"contributors":3,"examples":29988,"train_loss":0.4123456789,"evaluation":{"n":3000,"auc":0.7812,"log_loss":0.41,"accuracy":0.83,"brier":0.12},"eval_clients":3,"strategy_state":{"steps":1},"audit_head":"2:0d577029f01be88388bdae059b82f3ade1fd2d030d41a8867820902b69c354fd"}	79d0c56ec82b5378002a832bac6e6a06f2b56b36e35d8e4320ed0591da01d3e5
2	q3-pd	2	2026-03-04 05:08:07.123456+00	{"version":2,"parent":1,"run_id":"q3-pd","round":2,"created":"2026-03-04T05:08:07.123456789Z","weights":[-2.6932345,0.03333333333333333,1e-300,0,12345.678901234567],"features":["age","income"],"contributors":3,"examples":29988,"train_loss":0.4123456789,"evaluation":{"n":3000,"auc":0.7812,"log_loss":0.41,"accuracy":0.83,"brier":0.12},"eval_clients":3,"strategy_state":{"steps":2},"audit_head":"3:bef080f0e51fa8a14fa9a054df585bb9a178f7c787c75c44b3847d8645ddc416"}	1ddd8a85424bc663b0bace201578348b197b782f1d2d0bee03b956b887d66cc5
3	q3-pd	3	2026-03-04 05:09:07.123456+00	{"version":3,"parent":2,"run_id":"q3-pd","round":3,"created":"2026-03-04T05:09:07.123456789Z","weights":[-2.6942345000000003,0.03333333333333333,1e-300,0,12345.678901234567],"features":["age","income"],"contributors":3,"examples":29988,"train_loss":0.4123456789,"evaluation":{"n":3000,"auc":0.7812,"log_loss":0.41,"accuracy":0.83,"brier":0.12},"eval_clients":3,"strategy_state":{"steps":3},"audit_head":"5:e6e4cb2a0d469e8823ee0f63b4cc709cc8bb8db7684cbc1b94cfecdef08574ce"}	df1537483f5dc4b6a9f88486d3ac7dea2dbaae0a2859ea49a270f6a10d3899ab
4	q4-pd	1	2026-03-04 05:10:07.123456+00	{"version":4,"parent":3,"run_id":"q4-pd","round":1,"created":"2026-03-04T05:10:07.123456789Z","weights":[-2.6952345,0.03333333333333333,1e-300,0,12345.678901234567],"features":["age","income"],"contributors":3,"examples":29988,"train_loss":0.4123456789,"evaluation":{"n":3000,"auc":0.7812,"log_loss":0.41,"accuracy":0.83,"brier":0.12},"eval_clients":3,"strategy_state":{"steps":4},"audit_head":"8:6984a073e327d6f44f9dc04dc5595c358bf71f7970f777d6b1d224b6a15cc0d3"}	925d53efffdda2a9614cfe837f2821f3d2d3444917ca6fa9e804037c031b80fd
\.


--
-- Name: fedprop_runs_seq_seq; Type: SEQUENCE SET; Schema: fedprop_fixture_v2; Owner: -
--

SELECT pg_catalog.setval('fedprop_fixture_v2.fedprop_runs_seq_seq', 7, true);


--
-- Name: fedprop_audit fedprop_audit_pkey; Type: CONSTRAINT; Schema: fedprop_fixture_v2; Owner: -
--

ALTER TABLE ONLY fedprop_fixture_v2.fedprop_audit
    ADD CONSTRAINT fedprop_audit_pkey PRIMARY KEY (seq);


--
-- Name: fedprop_head fedprop_head_pkey; Type: CONSTRAINT; Schema: fedprop_fixture_v2; Owner: -
--

ALTER TABLE ONLY fedprop_fixture_v2.fedprop_head
    ADD CONSTRAINT fedprop_head_pkey PRIMARY KEY (id);


--
-- Name: fedprop_leader fedprop_leader_pkey; Type: CONSTRAINT; Schema: fedprop_fixture_v2; Owner: -
--

ALTER TABLE ONLY fedprop_fixture_v2.fedprop_leader
    ADD CONSTRAINT fedprop_leader_pkey PRIMARY KEY (id);


--
-- Name: fedprop_meta fedprop_meta_pkey; Type: CONSTRAINT; Schema: fedprop_fixture_v2; Owner: -
--

ALTER TABLE ONLY fedprop_fixture_v2.fedprop_meta
    ADD CONSTRAINT fedprop_meta_pkey PRIMARY KEY (id);


--
-- Name: fedprop_runs fedprop_runs_pkey; Type: CONSTRAINT; Schema: fedprop_fixture_v2; Owner: -
--

ALTER TABLE ONLY fedprop_fixture_v2.fedprop_runs
    ADD CONSTRAINT fedprop_runs_pkey PRIMARY KEY (id);


--
-- Name: fedprop_versions fedprop_versions_pkey; Type: CONSTRAINT; Schema: fedprop_fixture_v2; Owner: -
--

ALTER TABLE ONLY fedprop_fixture_v2.fedprop_versions
    ADD CONSTRAINT fedprop_versions_pkey PRIMARY KEY (version);


--
-- PostgreSQL database dump complete
--


