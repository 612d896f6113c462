-- Human resources & social security: insured persons and monthly contributions.
-- Habits: gender as 'M' / 'F', the birth date as SQL DATE, contribution months as
-- 'YYYYMM' text, employers identified by USCC (older ones by a 15-digit
-- registration number instead), money as numeric.

CREATE TABLE sb_cbry (                    -- 参保人员
    grbh      varchar(16) PRIMARY KEY,      -- 个人编号
    sfzhm     varchar(24),                  -- 身份证号码 (legacy 15-digit numbers kept)
    xm        varchar(50) NOT NULL,
    xb        char(1),                      -- M / F
    csny      date,                         -- 出生年月(日)
    cbrq      date,                         -- 参保日期
    cbzt      char(1) NOT NULL DEFAULT '1', -- 参保状态 1 正常 2 暂停 3 终止
    gxsj      timestamp NOT NULL DEFAULT localtimestamp(0)
);

CREATE TABLE sb_jfmx (                    -- 缴费明细: one month, one insurance type
    grbh      varchar(16) NOT NULL REFERENCES sb_cbry(grbh),
    jfny      char(6) NOT NULL,             -- 缴费年月 YYYYMM
    xzdm      char(3) NOT NULL,             -- 险种代码 110 养老 310 医疗 210 失业
    dwbh      varchar(20),                  -- 单位编号
    dwmc      varchar(200),                 -- 单位名称
    tyshxydm  varchar(18),                  -- 单位统一社会信用代码
    jfjs      numeric(12,2),                -- 缴费基数
    grjfe     numeric(12,2),                -- 个人缴费额
    dwjfe     numeric(12,2),                -- 单位缴费额
    dzbz      char(1) NOT NULL DEFAULT '1', -- 到账标志
    PRIMARY KEY (grbh, jfny, xzdm)
);
ALTER TABLE sb_cbry REPLICA IDENTITY FULL;
ALTER TABLE sb_jfmx REPLICA IDENTITY FULL;
