-- Public security bureau: household registration (hukou) and residence permits.
-- Habits of this system: pinyin-abbreviated column names, dates as YYYYMMDD text,
-- gender as GB/T 2261.1 digits ('1' male, '2' female), ethnicity as two-digit
-- GB/T 3304 codes, registered addresses with the full '广东省深圳市' prefix.

CREATE TABLE hj_hu (                      -- 户: a household
    hh        varchar(12) PRIMARY KEY,      -- 户号
    hzxm      varchar(50),                  -- 户主姓名
    hzsfzh    varchar(24),                  -- 户主身份证号
    hjdz      varchar(200) NOT NULL,        -- 户籍地址
    lhrq      char(8),                      -- 立户日期 YYYYMMDD
    gxsj      timestamp NOT NULL DEFAULT localtimestamp(0)  -- 更新时间
);

CREATE TABLE rk_jbxx (                    -- 人口基本信息: one registered person
    rkbh      varchar(20) PRIMARY KEY,      -- 人口编号 (internal person number)
    gmsfhm    varchar(24),                  -- 公民身份号码: 18 digits, legacy 15, or missing
    xm        varchar(50) NOT NULL,         -- 姓名
    xb        char(1),                      -- 性别 1/2
    mz        char(2),                      -- 民族 GB/T 3304
    csrq      char(8),                      -- 出生日期 YYYYMMDD
    hh        varchar(12) REFERENCES hj_hu(hh),  -- 户号
    yhzgx     char(2),                      -- 与户主关系 (02 配偶, 20 子 ...)
    hjdz      varchar(200),                 -- 户籍地址
    hyzk      char(2),                      -- 婚姻状况 GB/T 2261.2 (10 未婚, 20 已婚, 40 离婚)
    swrq      char(8),                      -- 死亡日期 YYYYMMDD (注销)
    zxbz      char(1) NOT NULL DEFAULT '0', -- 注销标志 0 正常 1 死亡注销 2 迁出
    gxsj      timestamp NOT NULL DEFAULT localtimestamp(0)
);
CREATE INDEX rk_jbxx_gmsfhm ON rk_jbxx (gmsfhm);

CREATE TABLE jzz (                        -- 居住证: residence permit of a non-hukou resident
    jzzbh     varchar(20) PRIMARY KEY,      -- 居住证编号
    sfzh      varchar(24),                  -- 身份证号
    xm        varchar(50) NOT NULL,
    xb        char(1),
    jzdz      varchar(200),                 -- 居住地址
    qfrq      char(8),                      -- 签发日期
    yxqz      char(8),                      -- 有效期至
    gxsj      timestamp NOT NULL DEFAULT localtimestamp(0)
);

-- Debezium carries full before-images of updated and deleted rows
ALTER TABLE hj_hu REPLICA IDENTITY FULL;
ALTER TABLE rk_jbxx REPLICA IDENTITY FULL;
ALTER TABLE jzz REPLICA IDENTITY FULL;
